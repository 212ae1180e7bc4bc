"""Media: frames in and out. Decoding with PyAV (`video`), encoding video files (`writer`) and
labelled PNG grids (`pictures`). Knows no model, no engine and no command line."""
