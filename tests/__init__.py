"""Tests and the developer tools that drive notebooks (``python -m tests.nbtools``)."""
