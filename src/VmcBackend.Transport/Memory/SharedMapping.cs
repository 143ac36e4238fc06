using System.Runtime.InteropServices;
using Tmds.Linux;
using VmcBackend.Transport.Interop;

namespace VmcBackend.Transport.Memory;

/// <summary>
/// A MAP_SHARED mapping of a sealed memfd, owned: disposing it unmaps it once. Only sealed memfds
/// are mapped (<see cref="TryMapSealed"/>), so the other side cannot truncate the file under the
/// mapping and make this process fault (SIGBUS).
/// </summary>
public sealed unsafe class SharedMapping : SafeHandle
{
    /// <summary>The seals a shared region must carry (docs/protocol.md, section 1).</summary>
    public static readonly int RequiredSeals = LibC.F_SEAL_SHRINK | LibC.F_SEAL_GROW;

    private SharedMapping(nint address, ulong length) : base(0, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
    }

    public ulong Length { get; }
    public byte* Pointer => (byte*)handle;
    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => LibC.munmap((void*)handle, (size_t)Length) == 0;

    /// <summary>
    /// Maps [<paramref name="offset"/>, offset + <paramref name="length"/>) of <paramref name="fd"/>
    /// read/write if it is a regular (memfd) file sealed against shrinking and growing that holds
    /// the whole range. The fd stays the caller's (a mapping does not need it open).
    /// </summary>
    public static SharedMapping? TryMapSealed(OwnedFd fd, ulong offset, ulong length, out string? error)
    {
        error = Check(fd.Fd, offset, length);
        if (error != null) return null;
        void* p = LibC.mmap(null, (size_t)length, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, fd.Fd, (long)offset);
        if (p == LibC.MAP_FAILED)
        {
            error = $"mmap failed: {Errno.Describe(Errno.Last)}";
            return null;
        }
        return new SharedMapping((nint)p, length);
    }

    private static string? Check(int fd, ulong offset, ulong length)
    {
        stat st;
        if (LibC.fstat(fd, &st) != 0) return $"fstat failed: {Errno.Describe(Errno.Last)}";
        if ((st.st_mode & LibC.S_IFMT) != LibC.S_IFREG) return "not a memory file (memfd)";
        if (length == 0 || length > long.MaxValue || offset > long.MaxValue - length) return "empty or oversized range";
        if ((ulong)(long)st.st_size < offset + length) return $"the fd holds {(long)st.st_size} bytes, the range needs {offset + length}";
        int seals = LibC.fcntl(fd, LibC.F_GET_SEALS);
        if (seals < 0) return "not a sealable memfd (F_GET_SEALS failed)";
        if ((seals & RequiredSeals) != RequiredSeals) return "memfd not sealed against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW)";
        return null;
    }
}
