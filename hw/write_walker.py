"""The WRITE walker: checks every address of a WRITE, then writes its data bytes."""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw import protocol

from .constant_compare import exceeds

__all__ = ["WALK_LAYOUT", "byte_write_layout", "WriteWalker"]

#: A WRITE to walk: its arguments and the number of its data bytes.
WALK_LAYOUT = data.StructLayout({"target": unsigned(8), "base": unsigned(24),
                                 "run": unsigned(16), "stride": unsigned(16),
                                 "data_length": range(protocol.MAX_DATA + 1)})


def byte_write_layout(addr_bits):
    """Return the layout of one byte written into a target's memory."""
    return data.StructLayout({"target": unsigned(8), "addr": unsigned(addr_bits + 1),
                              "data": unsigned(8)})


class WriteWalker(wiring.Component):
    """Walk a WRITE's addresses twice: check them all, then write the data bytes.

    Nothing is written unless every address lies inside the target. Both passes step
    through the same addresses with the same logic: a byte's address is its run's start
    plus its place in the run, and a run's end moves the start on by the stride. The
    first pass checks one address a cycle (each address and its check registered) and
    stops two cycles after the first one out of range; the second reads the data bytes
    from the frame buffer and writes them, one every three cycles (a read takes two)
    while the memories accept them (a byte arrives every 240 cycles at 1 Mbaud: nothing
    here needs to be faster). Every address is checked, so of the request checker's rules
    (:class:`~tritile.hw.request_checker.RequestChecker`) the walk needs only a data
    length of 1 to ``max_data`` bytes, for which its counters are sized.

    Parameters
    ----------
    sizes : dict of Target to int
        Byte size of every target (0 for a target this device lacks): each is a
        constant, so an address is checked against its target's size in a few LUTs.
    addr_bits : int
        Bits of an address inside any target (a base with higher bits set is out of
        range at once).
    max_data : int
        Bytes of the frame buffer.

    Members
    -------
    command : In(stream.Signature(WALK_LAYOUT))
        The WRITE, held until it is taken: when the walk is over.
    refused : Out(1)
        In the cycle ``command`` is taken: an address was out of range, nothing written.
    read_addr : Out(range(max_data))
        Frame buffer address of the next data byte.
    read_data : In(8)
        The frame buffer's byte at ``read_addr`` of two cycles before.
    write : Out(stream.Signature(byte_write_layout(addr_bits)))
        Bytes for the target's memory.
    """

    def __init__(self, sizes, addr_bits, max_data=protocol.MAX_DATA):
        self.sizes = {protocol.Target(t): s for t, s in sizes.items()}
        self.addr_bits = addr_bits
        self.max_data = max_data
        super().__init__({
            "command": In(stream.Signature(WALK_LAYOUT)),
            "refused": Out(1),
            "read_addr": Out(range(max_data)),
            "read_data": In(8),
            "write": Out(stream.Signature(byte_write_layout(addr_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        cmd = self.command.payload
        bits = self.addr_bits
        # One more bit than a target's addresses, so that no byte's address wraps while
        # every earlier address was in range (each below 2**bits, a stride below
        # 2**16 <= 2**bits); the first address out of range ends the walk, so later wraps
        # do not matter. `before_run` is the address before the run's first byte: it
        # starts at -1 (a synchronous clear to any constant costs nothing on iCE40) and
        # takes the base, then a stride at each run's end; `in_run` counts the run's bytes
        # from 1, so that neither counter's increment feeds a comparison (each increment
        # then shares its logic cells with its register).
        before_run = Signal(bits + 1)
        in_run = Signal(range(self.max_data + 1))   # a run may be longer than the data
        index = Signal(range(self.max_data))        # the data byte
        address = Signal(bits + 1)
        writing = Signal()                          # the second pass
        out_of_range = Signal()
        # The address of the last cycle, registered, and whether the one before was
        # outside: the check is a comparison after a register, not behind the address
        # adder. (In the first CHECK cycle it holds BASE's address, 0 after the clear,
        # which is outside only for a target that has no memory, where every address
        # is.) In the write pass the address is at least two cycles old when it is
        # written, so the register serves it there too.
        address_held = Signal(bits + 1)
        flagged = Signal()                          # the address two cycles ago was outside
        run_end = in_run == cmd.run                 # never for a contiguous WRITE (run 0)
        # Registered like the address check: `index` of the last cycle was the last byte
        # (compared through the counter's own increment, in its bits: a full buffer's
        # length is 0 there, and any length ends the walk within max_data bytes).
        last = Signal()
        last_held = Signal()                        # `last`, a cycle later: with `flagged`
        next_index = Signal.like(index)
        m.d.comb += next_index.eq(index + 1)
        m.d.sync += [last.eq(next_index == cmd.data_length[:len(index)]),
                     last_held.eq(last), address_held.eq(address)]
        load_base, step, clear = Signal(), Signal(), Signal()
        outside = Const(1)                          # a target of size 0 included
        for target, size in self.sizes.items():
            if size:
                outside = Mux(cmd.target == target, exceeds(address_held, size - 1), outside)
        m.d.comb += address.eq(before_run + in_run)
        with m.If(clear):
            m.d.sync += [before_run.eq(-1), in_run.eq(1), index.eq(0)]
        with m.Elif(load_base | step):
            # One adder: the base, then a stride at a run's end.
            m.d.sync += before_run.eq(before_run + Mux(load_base, cmd.base[:bits], cmd.stride))
            with m.If(step):
                m.d.sync += index.eq(next_index)
                with m.If(run_end):
                    m.d.sync += in_run.eq(1)
                with m.Else():
                    m.d.sync += [in_run.eq(in_run + 1), before_run.eq(before_run)]

        m.d.comb += [
            self.read_addr.eq(index),
            self.write.payload.target.eq(cmd.target),
            self.write.payload.addr.eq(address_held),
            self.write.payload.data.eq(self.read_data),
            self.refused.eq(out_of_range),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += clear.eq(1)
                m.d.sync += [writing.eq(0),
                             out_of_range.eq(cmd.base[bits:].any())]
                with m.If(self.command.valid):
                    m.next = "BASE"
            with m.State("BASE"):
                m.d.comb += load_base.eq(1)
                m.d.sync += [flagged.eq(0), last.eq(0), last_held.eq(0)]
                with m.If(out_of_range):
                    m.next = "DONE"
                with m.Elif(writing):
                    m.next = "FETCH"
                with m.Else():
                    m.next = "CHECK"
            with m.State("CHECK"):
                # Each address's check, and whether it was the last, is registered and
                # acted on two cycles later (this pass writes nothing, so the steps past
                # the address are harmless): no path runs from the address adder or the
                # index through a comparison into the counters.
                m.d.sync += flagged.eq(outside)
                with m.If(flagged):
                    m.d.sync += out_of_range.eq(1)
                    m.next = "DONE"
                with m.Elif(last_held):
                    m.d.sync += writing.eq(1)
                    m.next = "REWIND"
                with m.Else():
                    m.d.comb += step.eq(1)
            with m.State("REWIND"):
                m.d.comb += clear.eq(1)
                m.next = "BASE"
            with m.State("FETCH"):
                # The frame buffer shows byte `index` two cycles later.
                m.next = "FETCHED"
            with m.State("FETCHED"):
                m.next = "PUT"
            with m.State("PUT"):
                m.d.comb += self.write.valid.eq(1)
                with m.If(self.write.ready):
                    m.d.comb += step.eq(1)
                    with m.If(last):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("DONE"):
                m.d.comb += self.command.ready.eq(1)
                m.next = "IDLE"
        return m
