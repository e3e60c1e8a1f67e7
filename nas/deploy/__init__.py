"""Stage 4, the trained model in use: export with its model card (``artifact``), the torch-free classifier
(``classifier``), the webcam demo (``demo``) and end-to-end latency (``latency``). Nothing here imports the
search."""
