"""BlockRAM's read latency (one register, or two with ``output_register``) and its hold."""

import pytest

from tritile.hw.block_ram import BlockRAM

from helpers import simulate


@pytest.mark.parametrize("output_register,latency", [(False, 1), (True, 2)])
def test_a_read_shows_its_word_after_the_latency_and_holds_without_read_en(
        output_register, latency, py_rng):
    words = [py_rng.randrange(256) for _ in range(16)]
    dut = BlockRAM(8, 16, init=words, output_register=output_register)
    seen = []

    async def bench(ctx):
        # Addresses one a cycle: the word of address a shows `latency` cycles later.
        addresses = [py_rng.randrange(16) for _ in range(12)]
        for address in addresses:
            ctx.set(dut.read_addr, address)
            await ctx.tick()
            seen.append(ctx.get(dut.read_data))
        for _ in range(latency - 1):
            await ctx.tick()
            seen.append(ctx.get(dut.read_data))
        assert seen[latency - 1:] == [words[a] for a in addresses]
        # With read_en low, neither register moves, whatever the address.
        held = ctx.get(dut.read_data)
        ctx.set(dut.read_en, 0)
        ctx.set(dut.read_addr, (addresses[-1] + 1) % 16)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.read_data) == held

    simulate(dut, bench, name="block_ram")


def test_a_written_word_is_read_back_with_the_output_register(py_rng):
    dut = BlockRAM(8, 8, output_register=True)
    data = [py_rng.randrange(256) for _ in range(8)]

    async def bench(ctx):
        ctx.set(dut.write_en, 1)
        for address, byte in enumerate(data):
            ctx.set(dut.write_addr, address)
            ctx.set(dut.write_data, byte)
            await ctx.tick()
        ctx.set(dut.write_en, 0)
        for address, byte in enumerate(data):
            ctx.set(dut.read_addr, address)
            await ctx.tick().repeat(2)
            assert ctx.get(dut.read_data) == byte

    simulate(dut, bench, name="block_ram_write")


def test_a_write_with_granularity_writes_only_the_enabled_parts(py_rng):
    dut = BlockRAM(16, 4, granularity=8)
    old = [py_rng.randrange(1 << 16) for _ in range(4)]
    new = [py_rng.randrange(1 << 16) for _ in range(4)]
    enables = [0b00, 0b01, 0b10, 0b11]

    async def bench(ctx):
        for en, words in ((0b11, old), (None, new)):
            for address, word in enumerate(words):
                ctx.set(dut.write_en, en if en is not None else enables[address])
                ctx.set(dut.write_addr, address)
                ctx.set(dut.write_data, word)
                await ctx.tick()
        ctx.set(dut.write_en, 0)
        for address in range(4):
            mask = sum(0xff << (8 * i) for i in range(2) if enables[address] >> i & 1)
            ctx.set(dut.read_addr, address)
            await ctx.tick()
            assert ctx.get(dut.read_data) == (new[address] & mask) | (old[address] & ~mask)

    simulate(dut, bench, name="block_ram_granularity")


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("granularity", [0, 3, 7.5])
def test_a_granularity_that_does_not_divide_the_width_is_refused(granularity):
    with pytest.raises(ValueError, match="Granularity must be a positive divisor"):
        BlockRAM(16, 4, granularity=granularity)
