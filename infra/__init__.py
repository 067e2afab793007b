"""Bootstrap (user data), packaging and template helpers, and the local stack (`infra.local`)."""
