"""The workloads of issue 5, run against one server through bench/client.py.

Every workload is bounded in count (scaled by `--scale`) and in time (a deadline per
workload; a workload that runs out of time reports what it measured and `timed_out`).
Latencies are measured in the client with `time.perf_counter()`: from just before the
send request leaves to the moment the /sync (or WebSocket) response carrying the event
has been read and parsed. Sender and receivers share one process and one event loop, so
client overhead is included, identically for both servers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import orjson

from bench import dbstats
from bench.client import Client, JsonDict, Poller, timeline_events
from bench.servers import Server

PASSWORD = "bench-password-0123456789"

# Long-poll filter: presence is left on in both servers (their default) but excluded
# from the long-polls, so the presence churn of hundreds of users coming online does not
# decide message latencies. Lazy-loaded members: what real clients ask for in big rooms.
POLL_FILTER: JsonDict = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
    "presence": {"not_types": ["*"]},
}
# The receiver under load gets a bigger timeline window so no message is lost to a gap.
RECEIVER_FILTER: JsonDict = {
    "room": {"timeline": {"limit": 1000}, "state": {"lazy_load_members": True}},
    "presence": {"not_types": ["*"]},
}
# Workload 5's initial sync: every room with its last 10 events (Synapse's default limit).
INITIAL_SYNC_FILTER: JsonDict = {"room": {"timeline": {"limit": 10}}}


@dataclass
class Counts:
    senders: int = 4
    concurrency: int = 16
    messages: int = 2000
    idle_messages: int = 50
    fanout_users: int = 300
    fanout_rounds: int = 3
    sync_rooms: int = 200
    sync_messages: int = 20
    warm_repeats: int = 3
    big_joins: int = 2000
    big_window: int = 100
    big_pollers: int = 200
    ws_messages: int = 50
    setup_concurrency: int = 8
    # Pauses and the long-poll timeout; shortened at tiny scales (the smoke test) only.
    settle_s: float = 2.0
    idle_s: float = 3.0
    poll_timeout_ms: int = 30_000

    @classmethod
    def scaled(cls, scale: float) -> Counts:
        def s(full: int, floor: int) -> int:
            return max(floor, round(full * scale))
        big_joins = s(2000, 6)
        return cls(messages=s(2000, 16), idle_messages=s(50, 3), fanout_users=s(300, 3),
                   fanout_rounds=3 if scale >= 0.1 else 1, sync_rooms=s(200, 2),
                   sync_messages=s(20, 2), warm_repeats=3 if scale >= 0.1 else 1,
                   big_joins=big_joins, big_window=max(1, min(100, big_joins // 10)),
                   big_pollers=min(big_joins, s(200, 2)), ws_messages=s(50, 3),
                   **({} if scale >= 0.1 else {"settle_s": 0.2, "idle_s": 0.5, "poll_timeout_ms": 3000}))


def pct(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of values, or None when there are none."""
    data = sorted(values)
    if not data:
        return None
    return data[max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def bounded_gather(n: int, factories: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the coroutine factories with at most n in flight; results in order."""
    sem = asyncio.Semaphore(n)

    async def one(f: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await f()
    return await asyncio.gather(*(one(f) for f in factories))


class Tracker:
    """Arrival times of events carrying `content.bench_id`, with waiters per id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}

    def on_event(self, room_id: str, event: JsonDict, t: float) -> None:
        bid = event.get("content", {}).get("bench_id")
        if not isinstance(bid, str) or bid in self.arrived:
            return
        self.arrived[bid] = t
        fut = self._waiters.pop(bid, None)
        if fut is not None and not fut.done():
            fut.set_result(t)

    def waiter(self, bid: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if bid in self.arrived:
            fut.set_result(self.arrived[bid])
        else:
            self._waiters[bid] = fut
        return fut


def message(bid: str) -> JsonDict:
    return {"msgtype": "m.text", "body": f"benchmark message {bid}", "bench_id": bid}


async def quiesce(pollers: list[Poller], quiet_s: float = 0.5, max_s: float = 15.0) -> None:
    """Wait until every poller has a long-poll parked and none returned for quiet_s."""
    deadline = time.monotonic() + max_s
    last = -1
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        total = sum(p.polls for p in pollers)
        parked = all(p.in_flight.is_set() for p in pollers)
        if total != last or not parked:
            last, quiet_since = total, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        await asyncio.sleep(0.05)


class Bench:
    """All workloads against one running server; results accumulate in `self.m`."""

    def __init__(self, server: Server, session: aiohttp.ClientSession, counts: Counts,
                 log: Callable[[str], None], deadline_s: float = 600.0,
                 hooks: dict[str, Callable[[Server], Awaitable[None]]] | None = None,
                 skip: Iterable[str] = ()):
        self.server = server
        self.session = session
        self.c = counts
        self.log = log
        self.deadline_s = deadline_s
        self.hooks = hooks or {}
        self.skip = set(skip)
        self.m: dict[str, Any] = {"counts": asdict(counts)}
        self.errors: dict[str, str] = {}
        self.senders: list[Client] = []
        self.pool: list[Client] = []

    @property
    def anon(self) -> Client:
        return Client(self.session, self.server.base_url)

    async def step(self, name: str, coro: Awaitable[None]) -> None:
        """Run one workload within the deadline; a failure is recorded, not fatal."""
        if name.split("_")[0] in self.skip:
            coro.close()  # type: ignore[attr-defined]
            return
        # The client's cyclic garbage collector stays off while a step runs, as timeit
        # does: its full collections took 12-42 ms in this process and landed inside
        # timed requests (one inside a 125 ms cold initial sync), a pause of the client
        # that is no server's latency. Reference counting still frees almost everything;
        # the cycles left over are collected between steps.
        gc.collect()
        gc.disable()
        t0, cpu0 = time.perf_counter(), self.server.cpu_seconds()
        try:
            await asyncio.wait_for(coro, self.deadline_s)
        except Exception as e:  # noqa: BLE001 (recorded in the results)
            self.errors[name] = f"{type(e).__name__}: {e}"
            self.log(f"  {name}: FAILED {self.errors[name]}")
        finally:
            gc.enable()
        self.m.setdefault("durations_s", {})[name] = round(time.perf_counter() - t0, 2)
        cpu = self.server.cpu_seconds() - cpu0
        self.m.setdefault("server_cpu_s_by_step", {})[name] = round(cpu, 2)
        # Where the peak comes from: the server's high-water mark after each step.
        peak = round(self.server.hwm_kb() / 1024, 1)
        self.m.setdefault("server_rss_peak_mb_by_step", {})[name] = peak
        self.log(f"  {name}: {time.perf_counter() - t0:.1f}s (server CPU {cpu:.1f}s, "
                 f"peak RSS {peak} MiB, load {os.getloadavg()[0]:.1f})")

    async def hook(self, name: str) -> None:
        if name in self.hooks:
            await self.hooks[name](self.server)

    # -- setup -----------------------------------------------------------------------

    async def register_users(self) -> None:
        c = self.c
        n_pool = max(c.fanout_users, c.big_joins)
        names = ([f"sender{i}" for i in range(c.senders)] + ["receiver", "creator", "syncer"]
                 + [f"u{i:05d}" for i in range(n_pool)])
        t0 = time.perf_counter()
        clients = await bounded_gather(c.setup_concurrency, [
            (lambda n=n: self.anon.register(n, PASSWORD)) for n in names])
        elapsed = time.perf_counter() - t0
        self.m["register_per_user_ms"] = ms(elapsed / len(names))
        self.m["registered_users"] = len(names)
        self.senders = clients[:c.senders]
        self.receiver, self.creator, self.syncer = clients[c.senders:c.senders + 3]
        self.pool = clients[c.senders + 3:]

    # -- workloads 1 and 2 -----------------------------------------------------------

    async def send_under_load(self) -> None:
        """1: send throughput; 2: delivery latency to a long-polling receiver meanwhile."""
        c = self.c
        room = await self.senders[0].create_room(preset="public_chat", name="send throughput")
        for cl in self.senders[1:] + [self.receiver]:
            await cl.join(room)
        tracker = Tracker()
        poller = Poller(self.receiver, RECEIVER_FILTER, tracker.on_event, self.c.poll_timeout_ms)
        await poller.initial()
        poller.start()
        self.room_send, self.recv_poller, self.recv_tracker = room, poller, tracker
        await quiesce([poller])
        sent_at: dict[str, float] = {}
        send_lat: list[float] = []
        ids = iter(range(c.messages))

        async def worker(k: int) -> None:
            sender = self.senders[k % len(self.senders)]
            for i in ids:
                bid = f"load-{i}"
                t = time.perf_counter()
                sent_at[bid] = t
                await sender.send(room, message(bid))
                send_lat.append(time.perf_counter() - t)

        await self.hook("before_load")
        t0, cpu0 = time.perf_counter(), self.server.cpu_seconds()
        client_cpu0 = time.process_time()
        await asyncio.gather(*(worker(k) for k in range(c.concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = self.server.cpu_seconds() - cpu0
        # The client shares the two cores with the server: its own CPU per message says
        # how much of the machine is left for the server under test.
        client_cpu = time.process_time() - client_cpu0
        await self.hook("after_load")
        # Wait (bounded) for the tail of the deliveries.
        end = time.monotonic() + 30
        while len([b for b in sent_at if b in tracker.arrived]) < len(sent_at) and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        lat = [tracker.arrived[b] - t for b, t in sent_at.items() if b in tracker.arrived]
        self.m.update(
            w1_send_throughput_msg_s=round(c.messages / elapsed, 1),
            w1_elapsed_s=round(elapsed, 3), w1_server_cpu_ms_per_msg=ms(cpu / c.messages),
            w1_client_cpu_ms_per_msg=ms(client_cpu / c.messages),
            w1_send_p50_ms=ms(pct(send_lat, 50)), w1_send_p99_ms=ms(pct(send_lat, 99)),
            w2_delivery_p50_ms=ms(pct(lat, 50)), w2_delivery_p95_ms=ms(pct(lat, 95)),
            w2_delivery_p99_ms=ms(pct(lat, 99)), w2_delivered=len(lat),
            w2_lost=len(sent_at) - len(lat), w2_limited_syncs=poller.limited,
            w2_receiver_polls=poller.polls,
        )

    # -- workload 3 ------------------------------------------------------------------

    async def _one_at_a_time(self, n: int, prefix: str, tracker: Tracker,
                             parked: Callable[[], bool]) -> list[float]:
        lat = []
        for i in range(n):
            end = time.monotonic() + 5
            while not parked() and time.monotonic() < end:  # noqa: ASYNC110 (bounded)
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # let the request reach the server and park
            bid = f"{prefix}-{i}"
            fut = tracker.waiter(bid)
            t0 = time.perf_counter()
            await self.senders[0].send(self.room_send, message(bid))
            t_arr = await asyncio.wait_for(fut, 10)
            lat.append(t_arr - t0)
        return lat

    async def idle_latency(self) -> None:
        """3: one message at a time into an otherwise idle server; median send-to-arrival."""
        poller = self.recv_poller
        await quiesce([poller])
        await self.hook("before_idle")
        lat = await self._one_at_a_time(self.c.idle_messages, "idle", self.recv_tracker,
                                        poller.in_flight.is_set)
        await self.hook("after_idle")
        self.m.update(w3_idle_p50_ms=ms(statistics.median(lat)), w3_idle_p90_ms=ms(pct(lat, 90)),
                      w3_idle_max_ms=ms(max(lat)))

    # -- workload 8 ------------------------------------------------------------------

    async def websocket_latency(self) -> None:
        """8 (DevNet only): workload 3 over the WebSocket sync stream."""
        await self.recv_poller.stop()
        tracker = Tracker()
        url = self.receiver.ws_url(POLL_FILTER)
        headers = {"Authorization": f"Bearer {self.receiver.access_token}"}
        async with self.session.ws_connect(url, headers=headers, autoping=True) as ws:
            first = await ws.receive(timeout=30)
            if first.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"WebSocket: unexpected first frame {first.type}")
            connected = asyncio.Event()
            connected.set()

            async def reader() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        t = time.perf_counter()
                        for room_id, ev in timeline_events(orjson.loads(msg.data)):
                            tracker.on_event(room_id, ev, t)

            task = asyncio.ensure_future(reader())
            try:
                lat = await self._one_at_a_time(self.c.ws_messages, "ws", tracker, connected.is_set)
            finally:
                task.cancel()
        self.m.update(w8_ws_p50_ms=ms(statistics.median(lat)), w8_ws_p90_ms=ms(pct(lat, 90)),
                      w8_ws_max_ms=ms(max(lat)))

    async def stop_receiver(self) -> None:
        await self.recv_poller.stop()

    # -- fan-out (workloads 4 and 6) -------------------------------------------------

    async def _fanout(self, room: str, members: list[Client], rounds: int, prefix: str) -> dict[str, Any]:
        trackers = [Tracker() for _ in members]
        pollers = [Poller(cl, POLL_FILTER, tr.on_event, self.c.poll_timeout_ms) for cl, tr in zip(members, trackers, strict=True)]
        t0 = time.perf_counter()
        await bounded_gather(self.c.setup_concurrency, [p.initial for p in pollers])
        initial_s = time.perf_counter() - t0
        for p in pollers:
            p.start()
        per_user: list[float] = []
        all_received: list[float] = []
        missing = 0
        try:
            for r in range(rounds):
                await quiesce(pollers)
                bid = f"{prefix}-{r}"
                futs = [tr.waiter(bid) for tr in trackers]
                t_send = time.perf_counter()
                await self.creator.send(room, message(bid))
                done, pending = await asyncio.wait(futs, timeout=30)
                missing += len(pending)
                for f in pending:
                    f.cancel()
                times = [f.result() - t_send for f in done]
                per_user += times
                if times and not pending:
                    all_received.append(max(times))
        finally:
            await asyncio.gather(*(p.stop() for p in pollers))
        return {"p50_ms": ms(pct(per_user, 50)), "p99_ms": ms(pct(per_user, 99)),
                "all_received_ms": ms(statistics.median(all_received)) if all_received else None,
                "missing": missing, "initial_syncs_s": round(initial_s, 2),
                "limited_syncs": sum(p.limited for p in pollers)}

    async def fanout(self) -> None:
        """4: N users long-polling one room; time until each (p50/p99) and all received."""
        c = self.c
        members = self.pool[:c.fanout_users]
        room = await self.creator.create_room(preset="public_chat", name="fan-out")
        await bounded_gather(c.setup_concurrency, [(lambda m=m: m.join(room)) for m in members])
        await self.hook("before_fanout")
        r = await self._fanout(room, members, c.fanout_rounds, "fanout")
        await self.hook("after_fanout")
        self.m.update(w4_fanout_p50_ms=r["p50_ms"], w4_fanout_p99_ms=r["p99_ms"],
                      w4_fanout_all_ms=r["all_received_ms"], w4_missing=r["missing"],
                      w4_pollers=len(members))

    # -- workload 6 ------------------------------------------------------------------

    async def _snapshot(self) -> dbstats.Snapshot:
        await asyncio.sleep(self.c.settle_s)  # let background writers (user directory, search) finish
        if self.server.db_kind == "sqlite":
            return await asyncio.to_thread(dbstats.sqlite_snapshot, self.server.sqlite_path)
        assert self.server.pg_dsn
        return await dbstats.pg_snapshot(self.server.pg_dsn)

    def _per_join(self, delta: dbstats.Snapshot, n: int) -> dict[str, Any]:
        state_tables = dbstats.STATE_TABLES[self.server.kind]
        rows = sum(r for r, _ in delta.values())
        size = sum(b for _, b in delta.values())
        state_rows = sum(r for t, (r, _) in delta.items() if t in state_tables)
        state_bytes = sum(b for t, (_, b) in delta.items() if t in state_tables)
        top = sorted(delta.items(), key=lambda kv: -abs(kv[1][0]))[:8]
        return {"rows": round(rows / n, 2), "bytes": round(size / n), "state_rows": round(state_rows / n, 2),
                "state_bytes": round(state_bytes / n),
                "top_tables_rows": {t: round(r / n, 2) for t, (r, _) in top}}

    async def big_room(self) -> None:
        """6: N joins to one room (time per join; rows/bytes per join early and late),
        then a message's fan-out to P long-pollers among the members."""
        c = self.c
        room = await self.creator.create_room(preset="public_chat", name="big room")
        joiners = self.pool[:c.big_joins]
        w = c.big_window
        join_lat: list[float] = []

        async def join_all(clients: list[Client]) -> None:
            for cl in clients:
                t = time.perf_counter()
                await cl.join(room)
                join_lat.append(time.perf_counter() - t)

        await self.hook("before_big_room")
        s0 = await self._snapshot()
        await join_all(joiners[:w])
        s1 = await self._snapshot()
        await join_all(joiners[w:len(joiners) - w])
        s2 = await self._snapshot()
        await join_all(joiners[len(joiners) - w:])
        s3 = await self._snapshot()
        first, last = self._per_join(dbstats.diff(s0, s1), w), self._per_join(dbstats.diff(s2, s3), w)
        self.m.update(
            w6_joins=len(join_lat), w6_join_mean_ms=ms(statistics.fmean(join_lat)),
            w6_join_p50_ms=ms(pct(join_lat, 50)), w6_join_p99_ms=ms(pct(join_lat, 99)),
            w6_join_first_window_mean_ms=ms(statistics.fmean(join_lat[:w])),
            w6_join_last_window_mean_ms=ms(statistics.fmean(join_lat[-w:])),
            w6_window=w, w6_per_join_first=first, w6_per_join_last=last,
            w6_rows_per_join=last["rows"], w6_state_rows_per_join=last["state_rows"],
            w6_bytes_per_join=last["bytes"],
            w6_db_rows_total=sum(r for r, _ in s3.values()), w6_db_bytes_total=sum(b for _, b in s3.values()),
        )
        step = max(1, len(joiners) // c.big_pollers)
        pollers = joiners[::step][:c.big_pollers]
        r = await self._fanout(room, pollers, c.fanout_rounds, "big")
        self.m.update(w6_fanout_p50_ms=r["p50_ms"], w6_fanout_p99_ms=r["p99_ms"],
                      w6_fanout_all_ms=r["all_received_ms"], w6_fanout_missing=r["missing"],
                      w6_pollers=len(pollers), w6_pollers_initial_sync_s=r["initial_syncs_s"])
        await self.hook("after_big_room")

    # -- workload 5 ------------------------------------------------------------------

    async def initial_sync_setup(self) -> None:
        c = self.c
        rooms = await bounded_gather(4, [
            (lambda i=i: self.syncer.create_room(preset="private_chat", name=f"room {i}"))
            for i in range(c.sync_rooms)])
        await bounded_gather(c.concurrency, [
            (lambda r=r, j=j: self.syncer.send(r, message(f"init-{j}")))
            for r in rooms for j in range(c.sync_messages)])
        # Devices made now, so that the first request after the restart is the cold sync.
        self.sync_devices = [await self.anon.login(self.syncer.user_id or "", PASSWORD)
                             for _ in range(1 + c.warm_repeats)]

    async def initial_sync(self) -> None:
        """5: cold (first request after a restart) and warm (another device, right after)."""
        c = self.c

        async def timed(cl: Client) -> tuple[float, JsonDict]:
            t = time.perf_counter()
            body = await cl.sync(None, 0, INITIAL_SYNC_FILTER)
            return time.perf_counter() - t, body

        cold, body = await timed(self.sync_devices[0])
        n_rooms = len(body.get("rooms", {}).get("join", {}))
        n_events = sum(len(r.get("timeline", {}).get("events", ()))
                       for r in body.get("rooms", {}).get("join", {}).values())
        warm = [(await timed(d))[0] for d in self.sync_devices[1:]]
        same_device, _ = await timed(self.sync_devices[0])
        self.m.update(w5_cold_ms=ms(cold), w5_warm_ms=ms(statistics.median(warm)),
                      w5_repeat_same_device_ms=ms(same_device), w5_rooms=n_rooms,
                      w5_timeline_events=n_events, w5_response_bytes=len(json.dumps(body)))
        if n_rooms != c.sync_rooms:
            raise RuntimeError(f"initial sync returned {n_rooms} rooms, expected {c.sync_rooms}")

    # -- the whole run ---------------------------------------------------------------

    async def rss_idle(self, key: str) -> None:
        await asyncio.sleep(self.c.idle_s)
        self.m[key] = round(self.server.rss_kb() / 1024, 1)

    async def run(self, websocket: bool) -> dict[str, Any]:
        server = self.server
        self.m["loadavg_start"] = os.getloadavg()
        t = time.perf_counter()
        await server.start()
        self.m["start_s"] = round(time.perf_counter() - t, 2)
        await self.rss_idle("w7_rss_idle_mb")
        await self.step("register", self.register_users())
        if self.senders:
            await self.step("w1_w2_send_under_load", self.send_under_load())
            if hasattr(self, "recv_poller"):
                await self.step("w3_idle_latency", self.idle_latency())
                if websocket:
                    await self.step("w8_websocket", self.websocket_latency())
                await self.stop_receiver()
            await self.step("w4_fanout", self.fanout())
            await self.step("w6_big_room", self.big_room())
            await self.step("w5_setup", self.initial_sync_setup())
        self.m["w7_rss_peak_before_restart_mb"] = round(server.hwm_kb() / 1024, 1)
        t = time.perf_counter()
        await server.stop()
        self.m["stop_s"] = round(time.perf_counter() - t, 2)
        await server.start()
        await self.rss_idle("w7_rss_idle_after_restart_mb")
        if hasattr(self, "sync_devices"):
            await self.step("w5_initial_sync", self.initial_sync())
        await server.stop()
        self.m["loadavg_end"] = os.getloadavg()
        self.m["w7_rss_peak_mb"] = round(server.peak_rss_kb / 1024, 1)
        self.m["server_cpu_s"] = round(server.cpu_s, 1)
        self.m["rate_limited_requests"] = sum(
            cl.rate_limited for cl in self.senders + self.pool
            + [getattr(self, a) for a in ("receiver", "creator", "syncer") if hasattr(self, a)])
        if self.errors:
            self.m["errors"] = self.errors
        return self.m
