"""One module per reproduced paper: its citation, the studies it needs and its claims."""
