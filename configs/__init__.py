"""The shipped Hydra configs. This folder is also the package ``avssl.configs`` (``avssl/configs``
links here), so the commands find it from any working directory: ``pkg://avssl.configs``."""
