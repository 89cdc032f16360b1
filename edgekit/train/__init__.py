"""The train stage: fitting the fp32 Keras model (fit), the cached stage around it (stage),
and its TensorBoard logs. Reading and writing model files is edgekit.models.files."""
