using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;

// hmc-example: a host-side HMC for `vmcctl attach` (default framing: each message is a u32
// little-endian length and the bytes, on stdin from the guest, on stdout for the guest).
//   vmcctl attach --vm vm1 --hmc 0 <to-vmcctl >from-vmcctl &  hmc-example <from-vmcctl >to-vmcctl
// It answers the HMC command router's requests the way a management endpoint would:
//   exchange-ops (0x0001) and close (0x0002): good; echo (0x0103): the data back;
//   identify (0x0F01, not a router opcode): good, data "hmc-example" (so a test sees who answered);
//   anything else: invalid opcode (0x8001).
// Two echo payloads drive it: "UNSOLICITED <ms>" (after the reply, wait <ms>, then send the guest an
// unsolicited echo request "PING" and report on stderr when its response arrives) and "BYE" (reply,
// then exit: vmcctl sees EOF and detaches, and the built-in router takes the HMC back).
// One line per message on stderr.
const int Header = 32;
const ushort ExchangeOps = 0x0001, CloseOp = 0x0002, Echo = 0x0103, Identify = 0x0F01;
const ushort Good = 0x0000, InvalidOpcode = 0x8001;
const uint UnsolicitedToken = 0xC0FFEE00;

var stdin = Console.OpenStandardInput();
var stdout = Console.OpenStandardOutput();
var sent = new Dictionary<uint, Stopwatch>();
var writeLock = new object();
uint pings = 0;

void Send(byte[] m)
{
    lock (writeLock)
    {
        var head = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)m.Length);
        stdout.Write(head);
        stdout.Write(m);
        stdout.Flush();
    }
}

byte[] Message(uint token, ushort category, byte flags, ushort opcode, ushort rc, ReadOnlySpan<byte> data)
{
    var m = new byte[Header + data.Length];
    m[0] = 0xDE; m[1] = 0xCA; m[2] = 0xFF; m[3] = Header;
    BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(4), (uint)m.Length);
    BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(8), token);
    BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(12), category);
    m[15] = flags;
    BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(16), (uint)data.Length);
    BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(20), opcode);
    BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(22), rc);
    data.CopyTo(m.AsSpan(Header));
    return m;
}

bool ReadExactly(byte[] b)
{
    int got = 0;
    while (got < b.Length)
    {
        int n = stdin.Read(b, got, b.Length - got);
        if (n == 0) return false;
        got += n;
    }
    return true;
}

var lengthBytes = new byte[4];
while (ReadExactly(lengthBytes))
{
    var m = new byte[BinaryPrimitives.ReadUInt32LittleEndian(lengthBytes)];
    if (!ReadExactly(m)) break;
    if (m.Length < Header || m[0] != 0xDE || m[1] != 0xCA || m[2] != 0xFF)
    {
        Console.Error.WriteLine($"hmc-example: {m.Length} bytes that are not a router message; ignored");
        continue;
    }
    uint token = BinaryPrimitives.ReadUInt32BigEndian(m.AsSpan(8));
    ushort category = BinaryPrimitives.ReadUInt16BigEndian(m.AsSpan(12));
    byte flags = m[15];
    ushort opcode = BinaryPrimitives.ReadUInt16BigEndian(m.AsSpan(20));
    var data = m.AsSpan(Header);
    if ((flags & 0x40) != 0)
    {
        // The guest's response to one of our unsolicited requests.
        Stopwatch? sw;
        bool ours;
        lock (writeLock) ours = sent.Remove(token, out sw);
        string how = ours ? $"answered {sw!.Elapsed.TotalMilliseconds:F1} ms after it was sent" : "answering nothing we sent";
        Console.Error.WriteLine($"hmc-example: unsolicited message token 0x{token:X8} {how}, rc 0x{BinaryPrimitives.ReadUInt16BigEndian(m.AsSpan(22)):X4}");
        continue;
    }
    string text = Encoding.ASCII.GetString(data.Length > 64 ? data[..64] : data);
    Console.Error.WriteLine($"hmc-example: request opcode 0x{opcode:X4} token {token}, {data.Length} data bytes");
    bool reply = (flags & 0x80) != 0;
    byte[] response = opcode switch
    {
        ExchangeOps or CloseOp => Message(token, category, 0x40, opcode, Good, default),
        Echo => Message(token, category, 0x40, opcode, Good, data),
        Identify => Message(token, category, 0x40, opcode, Good, "hmc-example"u8),
        _ => Message(token, category, 0x40, opcode, InvalidOpcode, default),
    };
    if (reply) Send(response);
    if (opcode == Echo && text.StartsWith("UNSOLICITED ", StringComparison.Ordinal) && int.TryParse(text.AsSpan(12).Trim(), out int ms))
    {
        uint t = UnsolicitedToken + ++pings;
        var ping = Message(t, 0x8000, 0x80, Echo, Good, Encoding.ASCII.GetBytes($"PING {pings}"));
        _ = Task.Run(async () =>
        {
            await Task.Delay(ms);
            lock (writeLock) sent[t] = Stopwatch.StartNew();
            Send(ping);
            Console.Error.WriteLine($"hmc-example: sent unsolicited echo request token 0x{t:X8} ({ms} ms after the guest asked)");
        });
    }
    if (opcode == Echo && text == "BYE")
    {
        Console.Error.WriteLine("hmc-example: BYE: exiting (vmcctl detaches)");
        return 0;
    }
}
Console.Error.WriteLine("hmc-example: stdin ended");
return 0;
