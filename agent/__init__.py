"""The on-instance runner: reads its job spec, runs the recipe's phases, reports on the bus, uploads, powers off."""
