"""TruthfulQA data, judges, metrics and agreement with people. Imports nothing from harness/."""
