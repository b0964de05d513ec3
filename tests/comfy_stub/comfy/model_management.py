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


FREED: list = []  # (bytes, device) asked of free_memory


def free_memory(memory_required, device, keep_loaded=()):
    FREED.append((memory_required, device))
