"""Framework-free training recipes (torch + stdlib): sCD / sCT consistency distillation."""
