"""`edgecv bench` and `edgecv devices`: latency on desktop CPU/GPU, Android over adb, boards over ssh."""
