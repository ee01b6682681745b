"""amaranth.sim helpers for ``amaranth.lib.stream`` ports, with random bubbles and back-pressure."""


async def stream_put(ctx, port, payload, *, rng=None, stall=0.0):
    """Send one payload on ``port`` after a random number of idle cycles (probability ``stall`` each);
    returns once the transfer has happened."""
    while rng is not None and rng.random() < stall:
        await ctx.tick()
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, *, rng=None, stall=0.0):
    """Take one payload from ``port``, holding ``ready`` low on random cycles (probability ``stall``)."""
    while True:
        ctx.set(port.ready, rng is None or rng.random() >= stall)
        *_, valid, ready, payload = await ctx.tick().sample(port.valid, port.ready, port.payload)
        if valid and ready:
            return payload
