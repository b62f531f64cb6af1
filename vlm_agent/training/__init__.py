"""Data collection (experts, DAgger), training loops and closed-loop model selection (plain Python).

Models (`vlm_agent.models`) never import the simulator; this package joins the two.
"""
