"""The core every route and billing plug into: actions, the applier, the plan, the cycle."""
