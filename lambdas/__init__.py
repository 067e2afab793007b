"""The rest of the control plane: one thin Lambda handler per module over plain logic."""
