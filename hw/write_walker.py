"""The WRITE walker: checks every address of a WRITE, then writes its data bytes."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw import protocol

__all__ = ["walk_layout", "byte_write_layout", "WriteWalker"]


def walk_layout(addr_bits):
    """Return the layout of a WRITE to walk: its arguments, data length and target's size."""
    return data.StructLayout({"target": unsigned(8), "base": unsigned(24),
                              "run": unsigned(16), "stride": unsigned(16),
                              "length": unsigned(16), "size": unsigned(addr_bits)})


def byte_write_layout(addr_bits):
    """Return the layout of one byte written into a target's memory."""
    return data.StructLayout({"target": unsigned(8), "addr": unsigned(addr_bits + 1),
                              "data": unsigned(8)})


class WriteWalker(wiring.Component):
    """Walk a WRITE's addresses twice: check them all, then write the data bytes.

    Nothing is written unless every address lies inside the target: addresses only grow
    (stride >= run length, which the :class:`~tritile.hw.request_checker.RequestChecker`
    ensures), so the last byte of each run decides, two cycles per run. The data bytes
    then go out one per cycle while the memories accept them.

    Parameters
    ----------
    addr_bits : int
        Bits of an address inside any target (a base with higher bits set is out of
        range at once).
    max_data : int
        Bytes of the frame buffer.

    Members
    -------
    command : In(stream.Signature(walk_layout(addr_bits)))
        The WRITE, held until it is taken: when the walk is over.
    refused : Out(1)
        In the cycle ``command`` is taken: an address was out of range, nothing written.
    read_addr : Out(range(max_data))
        Frame buffer address of the next data byte.
    read_data : In(8)
        The frame buffer's byte at ``read_addr`` of the previous cycle.
    write : Out(stream.Signature(byte_write_layout(addr_bits)))
        Bytes for the target's memory.
    """

    def __init__(self, addr_bits, max_data=protocol.MAX_DATA):
        self.addr_bits = addr_bits
        super().__init__({
            "command": In(stream.Signature(walk_layout(addr_bits))),
            "refused": Out(1),
            "read_addr": Out(range(max_data)),
            "read_data": In(8),
            "write": Out(stream.Signature(byte_write_layout(addr_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        cmd = self.command.payload
        # Wide enough that address + stride never wraps while every earlier address was in
        # range (both below 2**addr_bits); after the first address out of range nothing
        # is written, so later wraps do not matter.
        address = Signal(self.addr_bits + 1)
        index = Signal(16)
        in_run = Signal(16)
        out_of_range = Signal()
        # Registered once per WRITE, so that no path chains several adders: bytes the
        # check pass has still to walk, the current run's bytes, the step from a run's
        # last byte to the next run, the index of the last byte in a run and in the data.
        left, run_bytes, gap = Signal(16), Signal(16), Signal(16)
        run_last, last_index = Signal(16), Signal(16)
        run_end = (cmd.run != 0) & (in_run == run_last)

        m.d.comb += [
            self.read_addr.eq(index),
            self.write.payload.target.eq(cmd.target),
            self.write.payload.addr.eq(address),
            self.write.payload.data.eq(self.read_data),
            self.refused.eq(out_of_range),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.command.valid):
                    m.d.sync += [index.eq(0), in_run.eq(0), address.eq(cmd.base),
                                 out_of_range.eq(cmd.base[self.addr_bits:].any()),
                                 left.eq(cmd.length), last_index.eq(cmd.length - 1),
                                 run_last.eq(cmd.run - 1),
                                 gap.eq(cmd.stride - cmd.run + 1)]
                    m.next = "SPLIT"
            with m.State("SPLIT"):
                m.d.sync += run_bytes.eq(Mux((cmd.run == 0) | (left < cmd.run), left, cmd.run))
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(address + run_bytes > cmd.size):
                    m.d.sync += out_of_range.eq(1)
                m.d.sync += [left.eq(left - run_bytes), address.eq(address + cmd.stride)]
                with m.If(left == run_bytes):
                    m.next = "DECIDE"
                with m.Else():
                    m.next = "SPLIT"
            with m.State("DECIDE"):
                m.d.sync += [index.eq(0), in_run.eq(0), address.eq(cmd.base)]
                with m.If(out_of_range):
                    m.d.comb += self.command.ready.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "FETCH"
            with m.State("FETCH"):
                # The frame buffer shows byte `index` in the next cycle.
                m.next = "PUT"
            with m.State("PUT"):
                m.d.comb += self.write.valid.eq(1)
                with m.If(self.write.ready):
                    m.d.sync += [
                        index.eq(index + 1),
                        address.eq(Mux(run_end, address + gap, address + 1)),
                        in_run.eq(Mux(run_end, 0, in_run + 1)),
                    ]
                    with m.If(index == last_index):
                        m.next = "DONE"
                    with m.Else():
                        # Fetch the next byte now: one byte per cycle while accepted.
                        m.d.comb += self.read_addr.eq(index + 1)
            with m.State("DONE"):
                m.d.comb += self.command.ready.eq(1)
                m.next = "IDLE"
        return m
