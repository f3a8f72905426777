"""The run directory: what `train` writes, and the one object every reader opens it into.

    layout.py     the file names and torch-free JSON readers (config, summary, history, weights)
    lock.py       the one-writer lock, RUN_DIR/.cifarlab.lock (torch-free)
    writer.py     writing a run: config.json, metrics, checkpoints, weights, summary; reading back a resume
    safestate.py  a checkpoint's training state as safetensors + JSON, never pickle
    run.py        Run and load_run: model, config, classes and files; the one image intake and predict
    inference.py  how a run's model predicts: batched logits, precision, test-time augmentation
    device.py     the device and numeric precision a model runs on
    result.py     History (metrics.jsonl) and TrainResult (what train returns), shown as tables and curves

It sits above data, models and pretrained and below cifarlab.training, which writes through it
(tests/test_layers.py). This __init__ imports nothing, so `import cifarlab.rundir.layout` loads no torch.
"""
