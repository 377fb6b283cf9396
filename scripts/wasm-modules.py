#!/usr/bin/env python3
"""WAT sources of the WebAssembly modules `make bench` runs in liberpal-wasm.

usage: wasm-modules.py DIR  -> DIR/hello.wat (writes "hello wasm"), DIR/big.wat (the same
_start plus 2,300 exported functions of straight-line i32 arithmetic: just over 1 MiB of
wasm once wat2wasm has compiled it, a module whose Cranelift compilation dominates a cold
start).
"""
import random
import sys

HELLO_START = """  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello wasm\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 11))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"""


def big() -> str:
    rng = random.Random(1)
    funcs = []
    for k in range(2300):
        body = ["local.get 0"]
        for j in range(60):
            op = rng.choice(["i32.add", "i32.mul", "i32.xor", "i32.sub"])
            body.append(f"i32.const {rng.randint(1, 1 << 30)} {op}")
            if j % 10 == 0:
                body.append("local.tee 1 local.get 1 i32.const 3 i32.rotl i32.add")
        funcs.append(f'  (func (export "f{k}") (param i32) (result i32) (local i32) ' + " ".join(body) + ")")
    return "(module\n" + HELLO_START + "\n" + "\n".join(funcs) + ")\n"


def main() -> None:
    out = sys.argv[1]
    open(f"{out}/hello.wat", "w").write("(module\n" + HELLO_START + ")\n")
    open(f"{out}/big.wat", "w").write(big())


if __name__ == "__main__":
    main()
