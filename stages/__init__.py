"""The pipeline's eight DVC stages, one module each, run as ``python -m stages.NAME`` by dvc.yaml.

Each reads params.yaml, calls the ``inception_pipeline`` library and writes its outputs. No
stage imports another: what two stages share lives in the library.
"""
