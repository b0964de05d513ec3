import torch

INTERRUPT = {"flag": False}


class InterruptProcessingException(Exception):
    pass


def get_torch_device():
    return torch.device("cpu")


def throw_exception_if_processing_interrupted():
    if INTERRUPT["flag"]:
        INTERRUPT["flag"] = False
        raise InterruptProcessingException()
