"""The soak harness's parts (tools/soak.py runs them): `probe` reads a process tree's memory,
threads and open files from /proc; `judge` turns a run's samples into numbers and a verdict;
`report` writes the JSON record and the picture; `scenarios` starts the processes under test
and their load; `live_load`, `serve_load` and `ros2_load` are the load processes themselves.
Nothing here is imported by lgcvd: the package knows the library only through its public API.
"""
