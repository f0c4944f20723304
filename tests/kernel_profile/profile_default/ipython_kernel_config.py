# Kernel settings for the course's own notebook runs (make test, make execute, make bench).
c = get_config()  # noqa: F821  (provided by IPython when it loads this file)
# TensorFlow writes C++ log lines straight to file descriptor 2 at import, which no
# environment variable silences in TF 2.21. Not forwarding fd-level output keeps them out of
# the committed outputs (and out of nbval's comparison); Python-level warnings still show.
c.IPKernelApp.capture_fd_output = False
c.HistoryManager.enabled = False
