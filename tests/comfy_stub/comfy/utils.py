class ProgressBar:
    """Records updates like ComfyUI's progress bar."""

    instances: list = []

    def __init__(self, total):
        self.total, self.current = total, 0
        ProgressBar.instances.append(self)

    def update(self, value):
        self.current += value
