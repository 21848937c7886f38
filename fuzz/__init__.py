"""Coverage-guided fuzzing of the sans-I/O decoders (atheris); see fuzz/run.py."""
