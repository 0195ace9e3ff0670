"""The library the pipeline's stages call: data, training, evaluation and the two CLIs
(``inception-predict``, ``inception-compare``). It never imports a stage; ``models`` never
imports it."""
