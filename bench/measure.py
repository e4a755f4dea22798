#!/usr/bin/env python3
"""Times veil and rops on the same inputs: median wall time of N runs and each run's peak RSS.

Every run is a fresh process started by the small launcher bench/peak.c, which reports the
process's wall time and its own peak RSS (a child of Python would report at least Python's RSS:
Linux carries the parent's high-water mark across exec). Each tool decrypts what it encrypted
itself.
"""
import argparse, os, statistics, subprocess, sys, tempfile

PEAK = None  # path of the compiled launcher, set in main()


def run(argv, stdin_path=None, env=None):
    """Runs one command, output discarded; returns (seconds, peak RSS in KiB)."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile("r") as result:
        proc = subprocess.run([PEAK, result.name, *argv], stdin=stdin, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
        if stdin_path:
            stdin.close()
        fields = result.read().split()
    if proc.returncode != 0 or len(fields) != 3 or fields[2] != "0":
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stderr.decode(errors='replace')}")
    return int(fields[0]) / 1e9, int(fields[1])


def measure(argv, runs, stdin_path=None, env=None):
    results = [run(argv, stdin_path, env) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def measure_pair(first, second, runs):
    """Runs two commands alternately, so that a busy moment on the machine costs both alike;
    each is (argv, stdin_path, env). Returns ((median s, peak KiB), (median s, peak KiB))."""
    results = ([], [])
    for _ in range(runs):
        for side, (argv, stdin_path, env) in enumerate((first, second)):
            results[side].append(run(argv, stdin_path, env))
    return tuple((statistics.median(r[0] for r in rs), max(r[1] for r in rs)) for rs in results)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--veil", required=True)
    p.add_argument("--rops", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--formats", nargs="+", default=["yaml", "json"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--peak", required=True, help="the compiled bench/peak.c")
    a = p.parse_args()
    global PEAK
    PEAK = a.peak

    key_file = os.path.join(a.work, "bench-key.txt")
    if not os.path.exists(key_file):
        subprocess.run(["age-keygen", "-o", key_file], check=True, stderr=subprocess.DEVNULL)
    lines = open(key_file).read().splitlines()
    recipient = next(l.split(": ")[1] for l in lines if l.startswith("# public key: "))
    secret = next(l for l in lines if l.startswith("AGE-SECRET-KEY-"))
    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.path.abspath(a.work)}
    veil_env = dict(base_env, SOPS_AGE_KEY=secret)
    rops_env = dict(base_env, ROPS_AGE=secret)

    rows = []
    for size in a.sizes:
        for fmt in a.formats:
            plain = os.path.join(a.work, f"plain-{size}.{fmt}")
            if not os.path.exists(plain):
                with open(plain, "wb") as out:
                    subprocess.run([sys.executable, a.corpus, str(size), fmt], stdout=out, check=True)
            veil_enc = os.path.join(a.work, f"veil-{size}.enc.{fmt}")
            rops_enc = os.path.join(a.work, f"rops-{size}.enc.{fmt}")
            with open(veil_enc, "wb") as out:
                subprocess.run([a.veil, "encrypt", "--age", recipient, plain], stdout=out, check=True, env=veil_env)
            with open(rops_enc, "wb") as out:
                subprocess.run([a.rops, "encrypt", "--age", recipient, "--format", fmt], stdin=open(plain, "rb"), stdout=out, check=True, env=rops_env)
            cases = [
                ("encrypt", plain, [a.veil, "encrypt", "--age", recipient, plain], None, veil_env,
                 [a.rops, "encrypt", "--age", recipient, "--format", fmt], plain, rops_env),
                ("decrypt", veil_enc, [a.veil, "decrypt", veil_enc], None, veil_env,
                 [a.rops, "decrypt", "--format", fmt], rops_enc, rops_env),
            ]
            for op, input_path, v_argv, v_in, v_env, r_argv, r_in, r_env in cases:
                # the file the command reads: the plain file, or veil's own encryption of it
                input_kib = os.path.getsize(input_path) / 1024
                (v_time, v_rss), (r_time, r_rss) = measure_pair(
                    (v_argv, v_in, v_env), (r_argv, r_in, r_env), a.runs)
                rows.append((f"{size:,}", fmt, op, input_kib, v_time, v_rss, r_time, r_rss))
                print(f"  {size} {fmt} {op}: veil {v_time*1000:.0f} ms, rops {r_time*1000:.0f} ms", file=sys.stderr)

    # A 10-value file decrypted with an age key: the everyday case.
    small = os.path.join(a.work, "plain-10.yaml")
    with open(small, "wb") as out:
        subprocess.run([sys.executable, a.corpus, "10", "yaml"], stdout=out, check=True)
    small_enc = os.path.join(a.work, "veil-10.enc.yaml")
    with open(small_enc, "wb") as out:
        subprocess.run([a.veil, "encrypt", "--age", recipient, small], stdout=out, check=True, env=veil_env)
    small_time, small_rss = measure([a.veil, "decrypt", small_enc], 21, None, veil_env)

    print(f"| values | format | op | input | veil | veil peak RSS | RSS / input | rops 0.1.7 | rops peak RSS | veil speed-up |")
    print(f"|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for values, fmt, op, kib, vt, vr, rt, rr in rows:
        print(f"| {values} | {fmt} | {op} | {kib/1024:.1f} MiB | {vt*1000:.0f} ms | {vr/1024:.1f} MiB | "
              f"{vr/kib:.1f}x | {rt*1000:.0f} ms | {rr/1024:.1f} MiB | {rt/vt:.1f}x |")
    print()
    print(f"10-value YAML decrypt with an age key (median of 21): {small_time*1000:.1f} ms, peak RSS {small_rss/1024:.1f} MiB")


if __name__ == "__main__":
    main()
