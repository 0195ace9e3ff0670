"""The project's tests: unit tests, and end-to-end tests (marked e2e) with real dvc."""
