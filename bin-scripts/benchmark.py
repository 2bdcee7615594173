#!/usr/bin/env python3
"""The whole-cluster benchmark suite (run it through bin-scripts/benchmark.sh).

Starts its own clusters (a coordinator and one or three brokers, temp dirs,
kernel-chosen ports on 127.0.0.1), runs the standard cases of the
performance issue with the perf tools, measures the machine's own limits in
the same run (page-cache write bandwidth of the log dir's file system with
and without fsync, loopback TCP bandwidth), samples each broker's CPU time
and peak RSS from /proc, and writes a Markdown section into BENCHMARKS.md
between the markers below (everything else in the file is kept).

BENCH_QUICK=1 makes every case small (a run of under two minutes on the
project machine); the full run moves tens of millions of records.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("KAFKA_RS_BIN_DIR") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
QUICK = os.environ.get("BENCH_QUICK") == "1"
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "BENCHMARKS.md"))
BEGIN = "<!-- benchmark.sh: begin (generated; edit the script, not this section) -->"
END = "<!-- benchmark.sh: end -->"
READY_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024

# Record counts: (quick, full).
SIZES = {
    "small": (1_000_000, 20_000_000),
    "kib": (200_000, 2_000_000),
    "compressed": (1_000_000, 10_000_000),
    "rf3": (500_000, 10_000_000),
    "fsync": (500_000, 10_000_000),
    "e2e": (1_000, 10_000),
    "throttled_seconds": (3, 20),
}


def size(name):
    quick, full = SIZES[name]
    return quick if QUICK else full


def log(message):
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


class Daemon:
    """A daemon whose stderr is collected line by line (and kept in a file)."""

    def __init__(self, name, args, log_path):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, marker):
        deadline = time.monotonic() + READY_TIMEOUT
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if marker in line:
                        return line
                seen = len(self.lines)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited before '{marker}': "
                                       + "\n".join(self.lines[-20:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no '{marker}' within {READY_TIMEOUT} s")
                self.cond.wait(left)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); after the ")" they are 12 and 13.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def port_after(line, marker):
    rest = line.split(marker, 1)[1]
    address = re.match(r"[^\s(]+", rest).group(0).rstrip(".")
    return int(address.rsplit(":", 1)[1])


class Cluster:
    """A coordinator and `brokers` brokers in a temp dir under `base`."""

    def __init__(self, base, name, brokers, overrides=()):
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        zk_config = os.path.join(self.dir, "zookeeper.properties")
        with open(zk_config, "w") as f:
            f.write(f"dataDir={self.dir}/zookeeper\nclientPort=0\nclientPortAddress=127.0.0.1\n"
                    "maxClientCnxns=0\n")
        self.coordinator = Daemon("coordinator", [os.path.join(BIN, "zookeeper-server-start"),
                                                  zk_config],
                                  os.path.join(self.dir, "zookeeper.log"))
        zk_port = port_after(self.coordinator.wait_for("binding to port "), "binding to port ")
        self.brokers = []
        self.ports = []
        with open(os.path.join(ROOT, "config", "server.properties")) as f:
            base_config = f.read()
        for broker_id in range(brokers):
            path = os.path.join(self.dir, f"server-{broker_id}.properties")
            with open(path, "w") as f:
                f.write(base_config)
                f.write(f"\nbroker.id={broker_id}\nlisteners=PLAINTEXT://127.0.0.1:0\n"
                        f"log.dirs={self.dir}/kafka-logs-{broker_id}\n"
                        f"zookeeper.connect=127.0.0.1:{zk_port}\n")
                for key, value in overrides:
                    f.write(f"{key}={value}\n")
            daemon = Daemon(f"broker-{broker_id}", [os.path.join(BIN, "kafka-server-start"), path],
                            os.path.join(self.dir, f"broker-{broker_id}.log"))
            marker = "Awaiting socket connections on "
            self.ports.append(port_after(daemon.wait_for(marker), marker))
            self.brokers.append(daemon)
        for daemon in self.brokers:
            daemon.wait_for("], started")
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def cpu_seconds(self):
        return sum(b.cpu_seconds() for b in self.brokers)

    def peak_rss_mb(self):
        return max(b.peak_rss_mb() for b in self.brokers)

    def create_topic(self, topic, replication_factor, configs=()):
        args = ["--create", "--bootstrap-server", self.bootstrap, "--topic", topic,
                "--partitions", "1", "--replication-factor", str(replication_factor)]
        for key, value in configs:
            args += ["--config", f"{key}={value}"]
        tool("kafka-topics", args)

    def stop(self):
        for daemon in self.brokers:
            daemon.stop()
        self.coordinator.stop()


def tool(name, args, timeout=1800):
    command = [os.path.join(BIN, name)] + args
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)} failed ({result.returncode}): "
                           f"{result.stderr.strip()}\n{result.stdout[-2000:]}")
    return result.stdout


SUMMARY = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), "
                     r"([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, "
                     r"(\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th\.$", re.M)


def producer_perf(cluster, topic, records, record_size, props, throughput=-1):
    out = tool("kafka-producer-perf-test",
               ["--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
                "--throughput", str(throughput), "--producer-props",
                f"bootstrap.servers={cluster.bootstrap}"] + [f"{k}={v}" for k, v in props])
    match = SUMMARY.search(out)
    if not match:
        raise RuntimeError(f"no summary line in: {out[-1000:]}")
    g = match.groups()
    return {"records": int(g[0]), "rate": float(g[1]), "mb_s": float(g[2]),
            "avg_ms": float(g[3]), "max_ms": float(g[4]), "p50": int(g[5]), "p95": int(g[6]),
            "p99": int(g[7]), "p999": int(g[8]), "line": match.group(0)}


def consumer_perf(cluster, topic, messages):
    out = tool("kafka-consumer-perf-test", ["--bootstrap-server", cluster.bootstrap, "--topic",
                                            topic, "--messages", str(messages)])
    line = out.strip().splitlines()[-1]
    fields = line.split(", ")
    return {"records": int(fields[4]), "rate": float(fields[5]), "mb_s": float(fields[3]),
            "line": line}


def e2e_latency(cluster, topic, messages, acks, message_size):
    out = tool("kafka-e2e-latency", [cluster.bootstrap, topic, str(messages), acks,
                                     str(message_size)])
    avg = float(re.search(r"Avg latency: ([\d.]+) ms", out).group(1))
    p = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)", out).groups()
    return {"avg_ms": avg, "p50": int(p[0]), "p99": int(p[1]), "p999": int(p[2]),
            "line": out.strip().splitlines()[-1]}


# ---- The machine's own limits ------------------------------------------------

def write_bandwidth(directory, total_mb, fsync_every_mb):
    """MB/s of writing `total_mb` MiB in 1 MiB writes; fdatasync after every
    `fsync_every_mb` MiB (0: only page cache, as the broker runs by default)."""
    path = os.path.join(directory, "write-probe")
    block = b"x" * MB
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for i in range(total_mb):
            os.write(fd, block)
            if fsync_every_mb and (i + 1) % fsync_every_mb == 0:
                os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return total_mb / elapsed


def loopback_bandwidth(total_mb):
    """MB/s through one loopback TCP connection, 1 MiB sends."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = [0]

    def receive():
        conn, _ = server.accept()
        buffer = bytearray(4 * MB)
        view = memoryview(buffer)
        while True:
            n = conn.recv_into(view)
            if n == 0:
                break
            received[0] += n
        conn.close()

    thread = threading.Thread(target=receive)
    thread.start()
    client = socket.create_connection(server.getsockname())
    block = b"x" * MB
    start = time.perf_counter()
    for _ in range(total_mb):
        client.sendall(block)
    client.shutdown(socket.SHUT_WR)
    thread.join()
    elapsed = time.perf_counter() - start
    client.close()
    server.close()
    return received[0] / MB / elapsed


# ---- The run -----------------------------------------------------------------

def measured(cluster, run):
    """Runs `run()` and adds the brokers' CPU seconds it took."""
    before = cluster.cpu_seconds()
    result = run()
    result["cpu_s"] = cluster.cpu_seconds() - before
    return result


def main():
    base = tempfile.mkdtemp(prefix="kafka-rs-bench-")
    rows = []
    started = time.time()
    load_before = os.getloadavg()
    try:
        limit_mb = 256 if QUICK else 2048
        log("measuring the machine: page-cache writes, fsync'd writes, loopback TCP")
        limits = {
            "write": max(write_bandwidth(base, limit_mb, 0) for _ in range(2)),
            "write_fsync": max(write_bandwidth(base, limit_mb // 4, 1) for _ in range(2)),
            "tcp": max(loopback_bandwidth(limit_mb) for _ in range(2)),
        }
        rss = {}

        log("one broker: cases 1, 2 and 4")
        single = Cluster(base, "single", 1)
        try:
            n = size("small")
            default_props = [("acks", "1")]
            big_batch = [("acks", "1"), ("batch.size", "1048576"), ("linger.ms", "5")]
            cases = [
                ("1", "RF=1 acks=1, 100 B, default batch.size", "c1", n, 100, default_props,
                 "write", 2_000_000),
                ("1", "RF=1 acks=1, 100 B, batch.size=1048576 linger.ms=5", "c1big", n, 100,
                 big_batch, "write", 4_500_000),
                ("2", "RF=1 acks=1, 1 KiB", "c2kib", size("kib"), 1024, default_props, "write",
                 None),
                ("2", "RF=1 acks=1, 100 B, lz4", "c2lz4", size("compressed"), 100,
                 default_props + [("compression.type", "lz4")], "write", None),
                ("2", "RF=1 acks=1, 100 B, zstd", "c2zstd", size("compressed"), 100,
                 default_props + [("compression.type", "zstd")], "write", None),
            ]
            for case, label, topic, records, record_size, props, bound, target in cases:
                log(f"case {case}: {label}")
                single.create_topic(topic, 1)
                result = measured(single, lambda: producer_perf(single, topic, records,
                                                                record_size, props))
                result.update(case=case, label=label, bound=bound, target=target,
                              bytes=records * record_size)
                rows.append(result)
            log("case 4: one consumer from the start")
            result = measured(single, lambda: consumer_perf(single, "c1", n))
            result.update(case="4", label=f"one consumer, {n:,} records of 100 B from the start",
                          bound="tcp", target=4_500_000, bytes=n * 100)
            rows.append(result)
            rss["one broker"] = single.peak_rss_mb()
        finally:
            single.stop()

        log("one broker with log.flush.interval.messages=1: case 6")
        fsync = Cluster(base, "fsync", 1, [("log.flush.interval.messages", "1")])
        try:
            records = size("fsync")
            fsync.create_topic("c6", 1)
            label = "RF=1 acks=1, 100 B, fsync before ack, batch.size=1048576"
            result = measured(fsync, lambda: producer_perf(
                fsync, "c6", records, 100,
                [("acks", "1"), ("batch.size", "1048576"), ("linger.ms", "5")]))
            result.update(case="6", label=label, bound="write_fsync", target=2_000_000,
                          bytes=records * 100)
            rows.append(result)
            rss["one broker, fsync"] = fsync.peak_rss_mb()
        finally:
            fsync.stop()

        log("three brokers: cases 3 and 5")
        three = Cluster(base, "three", 3, [("min.insync.replicas", "2")])
        try:
            records = size("rf3")
            three.create_topic("c3", 3)
            label = "RF=3 acks=all min.insync.replicas=2, 100 B"
            result = measured(three, lambda: producer_perf(three, "c3", records, 100,
                                                           [("acks", "all")]))
            result.update(case="3", label=label, bound="write3", target=1_000_000,
                          bytes=records * 100)
            rows.append(result)

            three.create_topic("c5", 3)
            seconds = size("throttled_seconds")
            # linger.ms=0, as Kafka's EndToEndLatency sets it: the figure is
            # the cluster's latency, not the producer's batching delay.
            label = "RF=3 acks=all linger.ms=0, 100 B at 10,000 records/s: produce latency"
            result = measured(three, lambda: producer_perf(three, "c5", 10_000 * seconds, 100,
                                                           [("acks", "all"), ("linger.ms", "0")],
                                                           throughput=10_000))
            result.update(case="5", label=label, bound=None, target=None,
                          bytes=10_000 * seconds * 100)
            rows.append(result)

            three.create_topic("c5e2e", 3)
            messages = size("e2e")
            label = f"RF=3 acks=all, 100 B: produce-then-consume round trips ({messages:,})"
            result = measured(three, lambda: e2e_latency(three, "c5e2e", messages, "all", 100))
            result.update(case="5", label=label, bound=None, target=None, bytes=messages * 100)
            rows.append(result)
            rss["three brokers (max of the three)"] = three.peak_rss_mb()
        finally:
            three.stop()
        limits["write3"] = limits["write"] / 3
        elapsed = time.time() - started
        write_report(rows, limits, rss, load_before, os.getloadavg(), elapsed)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fmt_rate(value):
    return f"{value:,.0f}"


def write_report(rows, limits, rss, load_before, load_after, elapsed):
    bound_names = {
        "write": "page-cache write",
        "write3": "page-cache write / 3",
        "write_fsync": "write + fdatasync per MiB",
        "tcp": "loopback TCP",
    }
    lines = [BEGIN, "", "## Whole cluster (`bin-scripts/benchmark.sh`)", ""]
    mode = "BENCH_QUICK=1 (small counts: figures are indicative only)" if QUICK else "full run"
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    lines += [
        f"Made by `{'BENCH_QUICK=1 ' if QUICK else ''}bin-scripts/benchmark.sh` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit {commit}, {mode}, "
        f"in {elapsed:.0f} s. "
        f"Load average before: {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f}; after: {load_after[0]:.2f} / {load_after[1]:.2f} / "
        f"{load_after[2]:.2f} (1 / 5 / 15 min). {os.cpu_count()} cores; producer, brokers and "
        "consumer all on this machine. MB = 1024 * 1024 bytes (Kafka's tools); "
        "payload bytes only.",
        "",
        "Machine limits measured in the same run (best of two): page-cache writes of 1 MiB "
        f"blocks {limits['write']:,.0f} MB/s; 1 MiB writes each followed by fdatasync "
        f"{limits['write_fsync']:,.0f} MB/s; one loopback TCP connection "
        f"{limits['tcp']:,.0f} MB/s.",
        "",
        "| case | what | records/s | MB/s | fraction of its bound | latency avg / p50 / p99 / "
        "p99.9 (ms) | broker CPU s per GB | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if "rate" in row:
            rate = fmt_rate(row["rate"])
            mb_s = f"{row['mb_s']:.1f}"
        else:
            rate, mb_s = "-", "-"
        if row.get("bound"):
            limit = limits[row["bound"]]
            fraction = f"{row['mb_s'] / limit:.0%} of {bound_names[row['bound']]}"
        else:
            fraction = "-"
        if "p99" in row:
            latency = (f"{row['avg_ms']:.2f} / {row['p50']} / {row['p99']} / {row['p999']}")
        else:
            latency = "-"
        gigabytes = row["bytes"] / 1e9
        # Latency cases idle most of the time: CPU per GB says nothing there.
        cpu = f"{row['cpu_s'] / gigabytes:.1f}" if row.get("bound") else "-"
        if row.get("target"):
            met = "met" if row["rate"] >= row["target"] else "not met"
            target = f"≥ {fmt_rate(row['target'])}/s: {met}"
        elif row["case"] == "5":
            target = f"p99 ≤ 3 ms: {'met' if row['p99'] < 3 else 'not met'}"
        else:
            target = "-"
        lines.append(f"| {row['case']} | {row['label']} | {rate} | {mb_s} | {fraction} | "
                     f"{latency} | {cpu} | {target} |")
    lines += ["", "Peak broker RSS (VmHWM, includes no page cache): "
              + "; ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
              + f" (target ≤ 200 MB: {'met' if max(rss.values()) <= 200 else 'not met'}).",
              "", "The tools' own closing lines:", ""]
    for row in rows:
        lines.append(f"    case {row['case']}: {row['line']}")
    lines += ["", END]
    section = "\n".join(lines) + "\n"
    text = open(OUT).read() if os.path.exists(OUT) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(OUT, "w") as f:
        f.write(text)
    print(section)
    log(f"wrote {OUT}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        print(f"ERROR benchmark failed: {err}", file=sys.stderr)
        sys.exit(1)
