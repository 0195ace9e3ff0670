"""The timed two-epoch fit that bench/first_epoch.py and bench/startup.py run in a child process.

Source text, not a function: the child may run another checkout's code (startup.py's ``old``
variant), which lacks this module. It needs ``keras``, ``time``, ``model``, ``train`` and ``val``,
and leaves per epoch its seconds (``epochs``), its steps' seconds (``steps``) and its validation
pass's seconds (``vals``).
"""

TIMED_FIT = """
class Times(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.marks = []
    def mark(self, event):
        self.marks.append((event, time.perf_counter()))
    on_epoch_begin = lambda self, epoch, logs=None: self.mark("epoch")
    on_train_batch_end = lambda self, batch, logs=None: self.mark("step")
    on_test_begin = lambda self, logs=None: self.mark("val")
    on_epoch_end = lambda self, epoch, logs=None: self.mark("end")

marks = Times()
model.fit(train, validation_data=val, epochs=2, verbose=0, shuffle=False, callbacks=[marks])
epochs, steps, vals = [], [], []
for event, t in marks.marks:
    if event == "epoch":
        start = last = t
        steps.append([])
    elif event == "step":
        steps[-1].append(t - last)
        last = t
    elif event == "val":
        val_start = t
    else:
        epochs.append(t - start)
        vals.append(t - val_start)
"""
