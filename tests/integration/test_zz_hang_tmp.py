import asyncio, sys
from nio import RoomSendResponse
from tests.integration.test_nio_rooms import register, make_group, text, log_in, BOB

async def test_hang(servers, nio_client):
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    group = await make_group(alice, bob)
    bob2 = await log_in(nio_client, url, BOB)
    await bob.sync(timeout_ms=0); await bob2.sync(timeout_ms=0)
    waiting = [asyncio.create_task(bob.sync(timeout_ms=20_000)), asyncio.create_task(bob2.sync(timeout_ms=20_000))]
    await asyncio.sleep(0.5)  # repro only
    try:
        async with asyncio.timeout(5):
            r = await alice.client.room_send(group, "m.room.message", text("hi"))
    except TimeoutError:
        for t in asyncio.all_tasks():
            print("TASK", t.get_name(), file=sys.stderr)
            t.print_stack(limit=None, file=sys.stderr)
        raise
    print("sent", r)
    await asyncio.gather(*waiting)
