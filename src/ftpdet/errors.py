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


class Interrupted(Exception):
    """Training stopped by SIGINT / SIGTERM after writing a checkpoint of the step it reached. Not an error
    of the user's: the CLI exits with 128 + the signal number, as a shell expects of a killed program."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = int(signum)
