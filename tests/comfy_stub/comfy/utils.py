class ProgressBar:
    """Records updates like ComfyUI's progress bar (and the previews sent with them)."""

    instances: list = []

    def __init__(self, total):
        self.total, self.current = total, 0
        self.previews: list = []  # (value, preview tuple) for every update that carried one
        ProgressBar.instances.append(self)

    def update_absolute(self, value, total=None, preview=None):
        self.total = self.total if total is None else total
        self.current = min(value, self.total)
        if preview is not None:
            self.previews.append((self.current, preview))

    def update(self, value):
        self.update_absolute(self.current + value)
