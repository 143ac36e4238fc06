using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Faults;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Tests;

/// <summary>The faults file format (docs/faults.md): what parses, and that every mistake names its
/// line and what is allowed instead.</summary>
public class FaultPlanTests
{
    [Test]
    public void EveryCatalogueEntryParsesWithItsRequiredKeys()
    {
        var plan = FaultPlan.Parse("""
            # one of each
            transport-event when=close after-ms=200
            drop type=cap-resp
            delay type=open-resp ms=300 count=2
            rem-buf hmc=0 buffers=all last=yes when=open
            flood entries=3000
            cap-resp max-hmc=0            # trap 1
            open-resp status=interface-failure
            open-resp buffer=0xFFFF
            close-resp status=4
            signal-length length=mtu+64 copy=allow
            rdma rc=hardware dir=to-hv skip=1
            request-vmc rc=long-busy-10ms count=forever
            reg-crq rc=closed ready-ms=100
            """);
        Assert.That(plan.Rules.Select(r => r.Kind), Is.EqualTo(new[]
        {
            FaultKind.TransportEvent, FaultKind.Drop, FaultKind.Delay, FaultKind.RemoveBuffer, FaultKind.Flood, FaultKind.CapabilitiesResponse,
            FaultKind.OpenResponse, FaultKind.OpenResponse, FaultKind.CloseResponse, FaultKind.SignalLength, FaultKind.Rdma,
            FaultKind.RequestVmc, FaultKind.RegisterQueue,
        }));
        Assert.That(plan.Rules.Select(r => r.Kind).Distinct().Count(), Is.EqualTo(Enum.GetValues<FaultKind>().Length), "every fault of the catalogue");
        var r = plan.Rules;
        Assert.Multiple(() =>
        {
            Assert.That((r[0].When, r[0].AfterMs), Is.EqualTo((FaultTrigger.Close, 200)));
            Assert.That(r[1].EntryKind, Is.EqualTo(0x8081));
            Assert.That((r[2].Ms, r[2].Count), Is.EqualTo((300, 2)));
            Assert.That((r[3].Buffers, r[3].Last, r[3].When), Is.EqualTo((64, true, FaultTrigger.Open)));
            Assert.That(r[4].When, Is.EqualTo(FaultTrigger.Ready), "actions fire when ready by default");
            Assert.That(r[5].MaxHmc, Is.EqualTo((byte)0));
            Assert.That(r[5].When, Is.EqualTo(FaultTrigger.Start), "point faults are armed from the start by default");
            Assert.That(r[6].Status, Is.EqualTo((byte)4));
            Assert.That(r[7].Buffer, Is.EqualTo((ushort)0xFFFF));
            Assert.That((r[9].LengthIsMtuRelative, r[9].Length, r[9].CopyAllow), Is.EqualTo((true, 64L, true)));
            Assert.That((r[10].Rc, r[10].Direction, r[10].Skip), Is.EqualTo((HcallReturn.Hardware, (RdmaDirection?)RdmaDirection.LocalToRemote, 1)));
            Assert.That((r[11].Rc, r[11].Count), Is.EqualTo(((HcallReturn)9901, FaultRule.Forever)));
            Assert.That((r[12].Rc, r[12].ReadyMs), Is.EqualTo((HcallReturn.Closed, 100)));
            Assert.That(r[6].Text, Is.EqualTo("open-resp status=interface-failure"));
        });
    }

    [TestCase("bogus", "line 1: unknown fault 'bogus' (one of: transport-event, drop")]
    [TestCase("drop type=signal\ndelay type=signal", "line 2: delay needs ms=")]
    [TestCase("\n\n  rdma rc=hardware dir=up", "line 3: dir=up: use to-hv (OPEN, write()), to-guest (receive) or any")]
    [TestCase("rdma", "line 1: rdma needs rc=")]
    [TestCase("rdma rc=hardware rc=busy", "line 1: 'rc' given twice")]
    [TestCase("flood entries=0", "line 1: entries=0: want a number 1..1048576")]
    [TestCase("cap-resp", "line 1: cap-resp needs at least one of max-hmc=")]
    [TestCase("open-resp status=1 buffer=2", "line 1: open-resp needs exactly one of status=")]
    [TestCase("open-resp status=0", "line 1: open-resp status=0 is no fault")]
    [TestCase("reg-crq rc=success", "line 1: reg-crq rc=success is no fault")]
    [TestCase("reg-crq rc=resource ready-ms=5", "line 1: ready-ms goes with reg-crq rc=closed only")]
    [TestCase("drop after-ms=5", "line 1: drop takes no 'after-ms' (keys: type, when, skip, count)")]
    [TestCase("transport-event when=start", "line 1: when=start: use ready, open, close, message or now")]
    [TestCase("drop type", "line 1: 'type': write key=value")]
    [TestCase("drop type=cap", "line 1: type=cap: use any, init, init-resp, cap-resp")]
    [TestCase("signal-length length=mtu+x", "line 1: length=x: want a number")]
    public void MistakesNameTheLineAndWhatIsAllowed(string text, string message)
    {
        var e = Assert.Throws<FormatException>(() => FaultPlan.Parse(text))!;
        Assert.That(e.Message, Does.StartWith(message));
    }

    [Test]
    public void EveryBootScenarioFaultsFileParses()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir != null && !Directory.Exists(Path.Combine(dir.FullName, "tests/guest/faults"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "tests/guest/faults not found above the test directory");
        var files = Directory.GetFiles(Path.Combine(dir!.FullName, "tests/guest/faults"), "*.faults");
        Assert.That(files, Has.Length.GreaterThanOrEqualTo(20));
        foreach (var f in files)
            Assert.That(() => FaultPlan.Parse(File.ReadAllText(f)).Rules, Is.Not.Empty, Path.GetFileName(f));
    }

    [Test]
    public void CommentsAndBlankLinesOnlyMakeAnEmptyPlan()
    {
        Assert.That(FaultPlan.Parse("# nothing\n\n   \t\n# more\n").Rules, Is.Empty);
    }

    [Test]
    public void NumbersInDecimalHexOrNegative()
    {
        var p = FaultPlan.Parse("request-vmc rc=-3\nrequest-vmc rc=0x2\nsignal-length length=4097\nsignal-length length=mtu-1");
        Assert.That(p.Rules.Select(r => (long)r.Rc).Take(2), Is.EqualTo(new long[] { -3, 2 }));
        Assert.That((p.Rules[2].LengthIsMtuRelative, p.Rules[2].Length), Is.EqualTo((false, 4097L)));
        Assert.That((p.Rules[3].LengthIsMtuRelative, p.Rules[3].Length), Is.EqualTo((true, -1L)));
    }

    [Test]
    public void SkipThenCountDecideWhichOccurrencesAct()
    {
        var plan = new FaultPlan([FaultRule.Parse("request-vmc rc=busy skip=2 count=3")]);
        var acted = Enumerable.Range(0, 8).Select(_ => plan.TakePoint(FaultKind.RequestVmc) != null).ToArray();
        Assert.That(acted, Is.EqualTo(new[] { false, false, true, true, true, false, false, false }));
        Assert.That(plan.Rules[0].TimesFired, Is.EqualTo(3));
    }

    [Test]
    public void APointFaultWaitsForItsTrigger()
    {
        var plan = new FaultPlan([FaultRule.Parse("rdma rc=hardware when=open")]);
        Assert.That(plan.TakePoint(FaultKind.Rdma), Is.Null, "not armed before a session opened");
        var due = new List<FaultRule>();
        plan.Trigger(FaultTrigger.Open, due);
        Assert.That(due, Is.Empty, "a point fault is armed, not fired, by its trigger");
        Assert.That(plan.TakePoint(FaultKind.Rdma), Is.Not.Null);
        Assert.That(plan.TakePoint(FaultKind.Rdma), Is.Null, "spent");
    }

    [Test]
    public void AnInjectedActionActsOnceOnOneEngine()
    {
        var plan = new FaultPlan();
        plan.Add(FaultRule.Parse("transport-event when=now"));
        var a = new List<FaultRule>();
        var b = new List<FaultRule>();
        plan.Trigger(FaultTrigger.Now, a);
        plan.Trigger(FaultTrigger.Now, b);
        Assert.That((a.Count, b.Count), Is.EqualTo((1, 0)));
    }
}
