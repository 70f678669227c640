"""Framework-free training recipes (torch + stdlib): sCD / sCT consistency distillation."""

__all__ = ['scm_distill']  # the package's modules; import what you need from them
