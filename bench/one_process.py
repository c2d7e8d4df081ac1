"""The example app's step scripts as function calls in one process, on the interpreter running it.

Run by bench/e2e.py on the steps' image environment (Python 3.9 there, so no newer syntax):

    python bench/one_process.py APP_SRC '[["read_data", ["--input-dir", ...]], ...]'

Imports happen before the clock starts; the last line printed is the seconds the calls took.
"""

import importlib.util
import json
import os
import sys
import time


def main() -> None:
    src, calls = sys.argv[1], json.loads(sys.argv[2])
    modules = {}
    for name, _ in calls:
        spec = importlib.util.spec_from_file_location(
            "bench_" + name, os.path.join(src, name + ".py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[name] = module
    start = time.perf_counter()
    for name, argv in calls:
        sys.argv = [name, *argv]
        modules[name].main()
    print(time.perf_counter() - start)


if __name__ == "__main__":
    main()
