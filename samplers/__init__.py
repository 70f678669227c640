"""samplers."""

__all__ = ['noise_space', 'ode', 'schedules', 'scm', 'trigflow']  # the package's modules; import what you need from them
