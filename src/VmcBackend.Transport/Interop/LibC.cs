using System.Runtime.InteropServices;

namespace VmcBackend.Transport.Interop;

/// <summary>
/// The few libc calls vmcd needs (Linux x86_64/ppc64le LP64 layouts): memfd, mmap, eventfd,
/// sendmsg/recvmsg with SCM_RIGHTS, poll. Everything else uses .NET's own APIs.
/// </summary>
public static unsafe partial class LibC
{
    public const int EINTR = 4, EAGAIN = 11;
    public const int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
    public const uint MFD_CLOEXEC = 1;
    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;
    public const int MSG_CTRUNC = 0x8, MSG_CMSG_CLOEXEC = 0x40000000, MSG_NOSIGNAL = 0x4000;
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1, SO_PEERCRED = 17;
    public const short POLLIN = 1;
    public const uint S_IFMT = 0xF000, S_IFREG = 0x8000;
    public static readonly nint MapFailed = -1;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec { public void* Base; public nuint Length; }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name; public uint NameLen;
        public IoVec* Iov; public nuint IovLen;
        public void* Control; public nuint ControlLen;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CmsgHdr { public nuint Len; public int Level; public int Type; }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd { public int Fd; public short Events; public short Revents; }

    /// <summary>CMSG_SPACE(n) on LP64: header (16) + data rounded up to 8.</summary>
    public static int CmsgSpace(int dataBytes) => sizeof(CmsgHdr) + ((dataBytes + 7) & ~7);

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initval, int flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buf, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint nfds, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "getuid")]
    public static partial uint GetUid();

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static partial int FstatRaw(int fd, byte* statBuf);

    /// <summary>st_mode and st_size of an fd (x86_64 struct stat: st_mode at 24, st_size at 48).</summary>
    public static bool TryFstat(int fd, out uint mode, out long size)
    {
        byte* st = stackalloc byte[256];
        mode = 0; size = 0;
        if (FstatRaw(fd, st) != 0) return false;
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64) { mode = *(uint*)(st + 24); size = *(long*)(st + 48); }
        else { mode = *(uint*)(st + 16); size = *(long*)(st + 48); }
        return true;
    }

    public static int LastError => Marshal.GetLastPInvokeError();

    /// <summary>Writes the 8-byte counter increment to an eventfd.</summary>
    public static bool EventFdSignal(int fd)
    {
        ulong one = 1;
        return Write(fd, &one, 8) == 8;
    }

    /// <summary>Reads (and resets) an eventfd counter; 0 if nothing was pending (non-blocking fds).</summary>
    public static ulong EventFdDrain(int fd)
    {
        ulong v = 0;
        return Read(fd, &v, 8) == 8 ? v : 0;
    }
}
