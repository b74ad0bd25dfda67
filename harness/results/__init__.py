"""Results: the results file, the environment each number carries, data frames, result sinks."""
