"""The escalation engine: policy, calendar, holds and the pure planner."""
