"""tritile's simulation models of the cells yosys ships no model for (see tritile.sim.netlist).

- :data:`PLL_BYPASS`: SB_PLL40_PAD and EHXPLLL pass the board's input clock pin through as
  the PLL's output and raise ``LOCK`` after 16 input cycles: the design's clock domain runs
  at whatever rate the simulation drives the pin (cycle counts are what it checks; the
  UART divisor is the bitstream's, for ``clock_hz``), and the lock-to-reset path
  (``hw/pll.py``'s reset synchronizer) runs as on the board.
- :data:`ECP5_MULT18X18D`: the signed/unsigned 18 x 18 multiply that yosys' DSP mapping
  instantiates (combinational), with the input and output registers on CLK0 that
  :class:`tritile.hw.dsp.DualMul8` instantiates (no pipeline register).
- :data:`ECP5_DP16KD`: the block RAM in the configurations yosys' memory mapping writes
  (both ports of one width: 1, 2, 4, 9 or 18 bits true dual-port, or 36 bits written by
  port A and read by port B; byte enables on the address LSBs; no output register, no
  chip select; NORMAL, WRITETHROUGH and READBEFOREWRITE).

Each model stops the simulation (``$fatal``) on a configuration it does not model.
"""

__all__ = ["PLL_BYPASS", "ECP5_MULT18X18D", "ECP5_DP16KD", "TRITILE_MODELS"]

PLL_BYPASS = {
    "ice40": """
module SB_PLL40_PAD (
  input PACKAGEPIN, output PLLOUTCORE, output PLLOUTGLOBAL, input EXTFEEDBACK,
  input [7:0] DYNAMICDELAY, output LOCK, input BYPASS, input RESETB,
  input LATCHINPUTVALUE, output SDO, input SDI, input SCLK
);
  parameter FEEDBACK_PATH = "SIMPLE";
  parameter DIVR = 0;
  parameter DIVF = 0;
  parameter DIVQ = 0;
  parameter FILTER_RANGE = 0;
  reg [4:0] count = 5'd0;
  always @(posedge PACKAGEPIN) if (!count[4]) count <= count + 5'd1;
  assign PLLOUTCORE = PACKAGEPIN;
  assign PLLOUTGLOBAL = PACKAGEPIN;
  assign LOCK = count[4];
  assign SDO = 1'b0;
endmodule
""",
    "ecp5": """
module EHXPLLL (
  input CLKI, input CLKFB, input PHASESEL1, input PHASESEL0, input PHASEDIR,
  input PHASESTEP, input PHASELOADREG, input STDBY, input PLLWAKESYNC, input RST,
  input ENCLKOP, input ENCLKOS, input ENCLKOS2, input ENCLKOS3,
  output CLKOP, output CLKOS, output CLKOS2, output CLKOS3, output LOCK, output INTLOCK,
  output REFCLK, output CLKINTFB
);
  parameter CLKI_DIV = 1;
  parameter CLKFB_DIV = 1;
  parameter CLKOP_DIV = 8;
  parameter CLKOP_CPHASE = 0;
  parameter CLKOP_FPHASE = 0;
  parameter CLKOP_ENABLE = "ENABLED";
  parameter FEEDBK_PATH = "CLKOP";
  parameter OUTDIVIDER_MUXA = "DIVA";
  parameter PLLRST_ENA = "DISABLED";
  parameter INTFB_WAKE = "DISABLED";
  parameter STDBY_ENABLE = "DISABLED";
  parameter DPHASE_SOURCE = "DISABLED";
  reg [4:0] count = 5'd0;
  always @(posedge CLKI) if (!count[4]) count <= count + 5'd1;
  assign CLKOP = CLKI;
  assign CLKOS = CLKI;
  assign CLKOS2 = CLKI;
  assign CLKOS3 = CLKI;
  assign LOCK = count[4];
  assign INTLOCK = count[4];
  assign REFCLK = CLKI;
  assign CLKINTFB = CLKI;
endmodule
""",
}

_PINS = lambda name: ", ".join(f"{name}{i}" for i in range(17, -1, -1))  # noqa: E731

def _mult_control(wire, param, pin):
    # The one of the four CEn (RSTn) pins that a register's parameter names.
    choices = " : ".join(f'{param} == "{pin}{i}" ? {pin}{i}' for i in (3, 2, 1))
    return f"  wire {wire} = {choices} : {pin}0;\n"


ECP5_MULT18X18D = f"""
module MULT18X18D (
  input {_PINS("A")}, input {_PINS("B")}, input {_PINS("C")},
  input SIGNEDA, input SIGNEDB, input SOURCEA, input SOURCEB,
  input CLK3, CLK2, CLK1, CLK0, input CE3, CE2, CE1, CE0, input RST3, RST2, RST1, RST0,
  input {_PINS("SRIA")}, input {_PINS("SRIB")},
  output {_PINS("SROA")}, output {_PINS("SROB")},
  output {_PINS("ROA")}, output {_PINS("ROB")}, output {_PINS("ROC")},
  output {", ".join(f"P{i}" for i in range(35, -1, -1))},
  output SIGNEDP
);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0";
  parameter REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0";
  parameter CLK0_DIV = "ENABLED";
  parameter CLK1_DIV = "ENABLED";
  parameter CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED";
  parameter HIGHSPEED_CLK = "NONE";
  parameter GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";
  wire [17:0] a = {{{_PINS("A")}}};
  wire [17:0] b = {{{_PINS("B")}}};
  // The input and output registers on CLK0 (the only clock tritile's instances use),
  // each with its own clock enable and synchronous reset of the four.
{"".join(_mult_control(wire, param, pin) for wire, param, pin in (
    ("ce_a", "REG_INPUTA_CE", "CE"), ("ce_b", "REG_INPUTB_CE", "CE"),
    ("ce_p", "REG_OUTPUT_CE", "CE"), ("rst_a", "REG_INPUTA_RST", "RST"),
    ("rst_b", "REG_INPUTB_RST", "RST"), ("rst_p", "REG_OUTPUT_RST", "RST")))}\
  reg [17:0] a_q = 18'd0;
  reg [17:0] b_q = 18'd0;
  reg [35:0] p_q = 36'd0;
  wire [17:0] a_in = REG_INPUTA_CLK == "NONE" ? a : a_q;
  wire [17:0] b_in = REG_INPUTB_CLK == "NONE" ? b : b_q;
  wire signed [18:0] a_ext = {{SIGNEDA & a_in[17], a_in}};
  wire signed [18:0] b_ext = {{SIGNEDB & b_in[17], b_in}};
  wire signed [37:0] product = a_ext * b_ext;
  always @(posedge CLK0) begin
    if (rst_a) a_q <= 18'd0; else if (ce_a) a_q <= a;
    if (rst_b) b_q <= 18'd0; else if (ce_b) b_q <= b;
    if (rst_p) p_q <= 36'd0; else if (ce_p) p_q <= product[35:0];
  end
  assign {{{", ".join(f"P{i}" for i in range(35, -1, -1))}}} =
      REG_OUTPUT_CLK == "NONE" ? product[35:0] : p_q;
  assign SIGNEDP = SIGNEDA | SIGNEDB;
  assign {{{_PINS("ROA")}}} = a_in;
  assign {{{_PINS("ROB")}}} = b_in;
  assign {{{_PINS("ROC")}}} = {{{_PINS("C")}}};
  assign {{{_PINS("SROA")}}} = 18'd0;
  assign {{{_PINS("SROB")}}} = 18'd0;
  initial begin
    if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0") ||
        (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0") ||
        (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0") ||
        REG_PIPELINE_CLK != "NONE" || RESETMODE != "SYNC" || SOURCEB_MODE != "B_SHIFT")
      $fatal(1, "MULT18X18D: tritile models the multiply with its input and output registers on CLK0, not %s %s %s %s",
             REG_INPUTA_CLK, REG_INPUTB_CLK, REG_PIPELINE_CLK, REG_OUTPUT_CLK);
  end
endmodule
"""


_DP16KD_PARAMS = (("DATA_WIDTH_A", "18"), ("DATA_WIDTH_B", "18"), ("REGMODE_A", '"NOREG"'),
                  ("REGMODE_B", '"NOREG"'), ("RESETMODE", '"SYNC"'),
                  ("ASYNC_RESET_RELEASE", '"SYNC"'), ("CSDECODE_A", '"0b000"'),
                  ("CSDECODE_B", '"0b000"'), ("WRITEMODE_A", '"NORMAL"'),
                  ("WRITEMODE_B", '"NORMAL"'), ("CLKAMUX", '"CLKA"'), ("CLKBMUX", '"CLKB"'),
                  ("GSR", '"ENABLED"'))
_INITVALS = [f"INITVAL_{i:02X}" for i in range(64)]


def _dp16kd_port(p):
    # One port of the true dual-port modes (1, 2, 4, 9, 18 bits wide); in 36-bit mode
    # port A only writes and port B only reads, both 36 bits wide.
    return f"""
  wire clk_{p} = CLK{p}MUX == "INV" ? ~CLK{p} : CLK{p};
  wire [13:0] ad_{p} = {{{", ".join(f"AD{p}{i}" for i in range(13, -1, -1))}}};
  wire [17:0] di_{p} = {{{", ".join(f"DI{p}{i}" for i in range(17, -1, -1))}}};
  reg [17:0] do_{p} = 18'd0;
  wire [9:0] word18_{p} = ad_{p}[13:4];
  wire [9:0] word9_{p} = ad_{p}[13:4];
  wire nine_hi_{p} = ad_{p}[3];
  // 1, 2 or 4 bits: bit w * address of the 16 data bits per word (bits 8 and 17 are parity).
  wire [13:0] narrow_bit_{p} = ad_{p} & ~(14'(DATA_WIDTH_{p} - 1));
  wire [9:0] narrow_word_{p} = narrow_bit_{p}[13:4];
  wire [4:0] narrow_pos_{p} = narrow_bit_{p}[3] ? {{1'b0, narrow_bit_{p}[3:0]}} + 5'd1
                                                 : {{1'b0, narrow_bit_{p}[3:0]}};
  wire [17:0] narrow_mask_{p} = 18'((1 << DATA_WIDTH_{p}) - 1) << narrow_pos_{p};
  always @(posedge clk_{p}) begin
    if (RST{p}) begin
      do_{p} <= 18'd0;
    end else if (CE{p} && DATA_WIDTH_{p} != 36) begin
      if (!WE{p} || WRITEMODE_{p} == "READBEFOREWRITE") begin
        if (DATA_WIDTH_{p} == 18) do_{p} <= mem[word18_{p}];
        else if (DATA_WIDTH_{p} == 9)
          do_{p} <= {{9'd0, nine_hi_{p} ? mem[word9_{p}][17:9] : mem[word9_{p}][8:0]}};
        else do_{p} <= (mem[narrow_word_{p}] & narrow_mask_{p}) >> narrow_pos_{p};
      end else if (WRITEMODE_{p} == "WRITETHROUGH") begin
        do_{p} <= di_{p};
      end
      if (WE{p}) begin
        if (DATA_WIDTH_{p} == 18) begin
          if (ad_{p}[0]) mem[word18_{p}][8:0] <= di_{p}[8:0];
          if (ad_{p}[1]) mem[word18_{p}][17:9] <= di_{p}[17:9];
        end else if (DATA_WIDTH_{p} == 9) begin
          if (nine_hi_{p}) mem[word9_{p}][17:9] <= di_{p}[8:0];
          else mem[word9_{p}][8:0] <= di_{p}[8:0];
        end else begin
          mem[narrow_word_{p}] <= (mem[narrow_word_{p}] & ~narrow_mask_{p}) |
                                  ((di_{p} << narrow_pos_{p}) & narrow_mask_{p});
        end
      end
    end
  end
"""


ECP5_DP16KD = f"""
module DP16KD (
  input {_PINS("DIA")}, input {", ".join(f"ADA{i}" for i in range(13, -1, -1))},
  input CEA, OCEA, CLKA, WEA, RSTA, input CSA2, CSA1, CSA0, output {_PINS("DOA")},
  input {_PINS("DIB")}, input {", ".join(f"ADB{i}" for i in range(13, -1, -1))},
  input CEB, OCEB, CLKB, WEB, RSTB, input CSB2, CSB1, CSB0, output {_PINS("DOB")}
);
{"".join(f"  parameter {name} = {value};{chr(10)}" for name, value in _DP16KD_PARAMS)}\
{"".join(f"  parameter [319:0] {name} = 320'h0;{chr(10)}" for name in _INITVALS)}
  // 1024 words of 18 bits, as yosys' memory mapping lays out INITVAL: word 16 * i + j in
  // bits [20 * j +: 18] of INITVAL_i; a 9-bit word is half of one, a 36-bit word two.
  reg [17:0] mem [0:1023];
  wire [319:0] initvals [0:63];
{"".join(f"  assign initvals[{i}] = {name};{chr(10)}" for i, name in enumerate(_INITVALS))}\
  integer i;
  initial begin
    for (i = 0; i < 1024; i = i + 1) mem[i] = initvals[i / 16][20 * (i % 16) +: 18];
    if (REGMODE_A != "NOREG" || REGMODE_B != "NOREG" || CSDECODE_A != "0b000" ||
        CSDECODE_B != "0b000" || DATA_WIDTH_A != DATA_WIDTH_B ||
        (DATA_WIDTH_A < 9 && ({" | ".join(_INITVALS)}) != 320'h0))
      $fatal(1, "DP16KD: configuration not modelled (see tritile.sim.netlist_models)");
  end
{_dp16kd_port("A")}{_dp16kd_port("B")}
  // 36 bits: port A writes {{DIB, DIA}} at ADA[13:5], 9-bit groups enabled by ADA[3:0];
  // port B reads {{DOB, DOA}} at ADB[13:5].
  wire [9:0] wide_wr = {{ad_A[13:5], 1'b0}};
  wire [9:0] wide_rd = {{ad_B[13:5], 1'b0}};
  reg [35:0] wide_do = 36'd0;
  always @(posedge clk_A) if (DATA_WIDTH_A == 36 && CEA && WEA) begin
    if (ad_A[0]) mem[wide_wr][8:0] <= di_A[8:0];
    if (ad_A[1]) mem[wide_wr][17:9] <= di_A[17:9];
    if (ad_A[2]) mem[wide_wr + 10'd1][8:0] <= di_B[8:0];
    if (ad_A[3]) mem[wide_wr + 10'd1][17:9] <= di_B[17:9];
  end
  always @(posedge clk_B) if (DATA_WIDTH_B == 36) begin
    if (RSTB) wide_do <= 36'd0;
    else if (CEB) wide_do <= {{mem[wide_rd + 10'd1], mem[wide_rd]}};
  end
  assign {{{_PINS("DOA")}}} = DATA_WIDTH_A == 36 ? wide_do[17:0] : do_A;
  assign {{{_PINS("DOB")}}} = DATA_WIDTH_B == 36 ? wide_do[35:18] : do_B;
endmodule
"""


#: Family -> Verilog of tritile's models, which replace yosys' blackboxes of those cells.
TRITILE_MODELS = {"ice40": PLL_BYPASS["ice40"],
                  "ecp5": PLL_BYPASS["ecp5"] + ECP5_MULT18X18D + ECP5_DP16KD}
