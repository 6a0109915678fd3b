"""The three kinds of trouble a stage meets (see docs/ARCHITECTURE.md, "Errors")."""


class PipelineError(Exception):
    """Fatal: bad config, missing or incomplete input, corrupt file.

    The message is one line that names the file (and line/offset where known) and what to do;
    the CLI prints it without a traceback and exits with status 2.
    """


class ConfigError(PipelineError):
    pass
