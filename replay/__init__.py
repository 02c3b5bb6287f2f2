"""Historical replay: simulator, benchmark strategies, runner and TCA report."""
