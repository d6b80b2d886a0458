"""Errors a user can fix. The CLI prints them as one line (no traceback) and exits with code 2."""


class FtpdetError(Exception):
    """Base class: the message names the file or key and the problem."""


class ConfigError(FtpdetError):
    pass


class DatasetError(FtpdetError):
    pass


class CheckpointError(FtpdetError):
    pass


class TrainingError(FtpdetError):
    pass
