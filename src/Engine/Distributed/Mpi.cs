using System.Runtime.InteropServices;

namespace Engine.Distributed;

/// <summary>
/// The engine's own binding to Open MPI's C library (libmpi.so.40): the dozen functions
/// data-parallel training calls, as function pointers taken from the library with
/// <see cref="NativeLibrary.GetExport"/>. Open MPI's handles (MPI_Comm, MPI_Datatype, MPI_Op,
/// MPI_Errhandler) are the addresses of global objects in the library (mpi.h:
/// <c>#define MPI_COMM_WORLD (&amp;ompi_mpi_comm_world)</c>), so each handle below is the address
/// of its exported symbol; MPI_IN_PLACE is <c>(void*)1</c> and MPI_STATUS_IGNORE is null.
/// Loaded only when a launcher started this process as one of several ranks.
/// </summary>
internal static unsafe class Mpi
{
    public const int Success = 0;
    public const int ThreadSerialized = 2;   // MPI_THREAD_SERIALIZED: any thread may call, one at a time
    public static readonly nint InPlace = 1;

    public static nint CommWorld, Float, Double, Byte, OpSum, ErrorsReturn;

    public static delegate* unmanaged<int*, byte***, int, int*, int> InitThread;
    public static delegate* unmanaged<int*, int> Initialized;
    public static delegate* unmanaged<int*, int> Finalized;
    public static delegate* unmanaged<int> Finalize;
    public static delegate* unmanaged<nint, int*, int> CommRank;
    public static delegate* unmanaged<nint, int*, int> CommSize;
    public static delegate* unmanaged<nint, nint, int> CommSetErrhandler;
    public static delegate* unmanaged<nint, void*, int, nint, nint, nint, nint*, int> Iallreduce;
    public static delegate* unmanaged<void*, int, nint, int, nint, nint*, int> Ibcast;
    public static delegate* unmanaged<nint, nint*, int> Ibarrier;
    public static delegate* unmanaged<nint*, int*, void*, int> Test;
    public static delegate* unmanaged<nint, int, int> Abort;
    public static delegate* unmanaged<int, byte*, int*, int> ErrorString;
    public static delegate* unmanaged<byte*, int*, int> GetLibraryVersion;

    private static nint library;

    /// <summary>Loads libmpi.so.40 and resolves every symbol (once). False, with the reason, when it cannot.</summary>
    public static bool TryLoad(out string reason)
    {
        reason = "";
        if (library != 0) return true;
        if (!NativeLibrary.TryLoad("libmpi.so.40", out var lib))
        {
            reason = "MPI not available: libmpi.so.40 (Open MPI) not found; install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)";
            return false;
        }
        try
        {
            nint F(string name) => NativeLibrary.GetExport(lib, name);
            CommWorld = F("ompi_mpi_comm_world"); Float = F("ompi_mpi_float"); Double = F("ompi_mpi_double"); Byte = F("ompi_mpi_byte");
            OpSum = F("ompi_mpi_op_sum"); ErrorsReturn = F("ompi_mpi_errors_return");
            InitThread = (delegate* unmanaged<int*, byte***, int, int*, int>)F("MPI_Init_thread");
            Initialized = (delegate* unmanaged<int*, int>)F("MPI_Initialized");
            Finalized = (delegate* unmanaged<int*, int>)F("MPI_Finalized");
            Finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
            CommRank = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_rank");
            CommSize = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_size");
            CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)F("MPI_Comm_set_errhandler");
            Iallreduce = (delegate* unmanaged<nint, void*, int, nint, nint, nint, nint*, int>)F("MPI_Iallreduce");
            Ibcast = (delegate* unmanaged<void*, int, nint, int, nint, nint*, int>)F("MPI_Ibcast");
            Ibarrier = (delegate* unmanaged<nint, nint*, int>)F("MPI_Ibarrier");
            Test = (delegate* unmanaged<nint*, int*, void*, int>)F("MPI_Test");
            Abort = (delegate* unmanaged<nint, int, int>)F("MPI_Abort");
            ErrorString = (delegate* unmanaged<int, byte*, int*, int>)F("MPI_Error_string");
            GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)F("MPI_Get_library_version");
        }
        catch (EntryPointNotFoundException e)
        {
            reason = $"MPI not available: libmpi.so.40 is not Open MPI 4 or newer ({e.Message})";
            return false;
        }
        library = lib;
        return true;
    }

    /// <summary>The library's text for an MPI error code.</summary>
    public static string Describe(int code)
    {
        var text = stackalloc byte[512];   // MPI_MAX_ERROR_STRING is 256 in Open MPI
        int length = 0;
        return ErrorString(code, text, &length) == Success ? Marshal.PtrToStringUTF8((nint)text, length) : $"MPI error {code}";
    }

    /// <summary>"Open MPI v4.1.4" (the first line of MPI_Get_library_version, up to its first comma).</summary>
    public static string Version()
    {
        var text = stackalloc byte[8192];  // MPI_MAX_LIBRARY_VERSION_STRING
        int length = 0;
        if (GetLibraryVersion(text, &length) != Success) return "MPI";
        return Marshal.PtrToStringUTF8((nint)text, length).Split(',', '\n')[0].Trim();
    }
}
