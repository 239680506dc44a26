//! Shared serve loop and configuration of the reference services.
