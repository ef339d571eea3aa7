"""Teaching pictures from captures and state logs: ladders, sequence graphs, the state diagram, the HTML report."""
