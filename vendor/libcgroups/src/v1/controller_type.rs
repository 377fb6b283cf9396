use std::fmt::Display;

#[derive(Hash, PartialEq, Eq, Debug, Clone, Copy)]
pub enum ControllerType {
    Cpu,
    CpuAcct,
    CpuSet,
    Devices,
    HugeTlb,
    Pids,
    PerfEvent,
    Memory,
    Blkio,
    NetworkPriority,
    NetworkClassifier,
    Freezer,
}

impl Display for ControllerType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let print = match *self {
            Self::Cpu => "cpu",
            Self::CpuAcct => "cpuacct",
            Self::CpuSet => "cpuset",
            Self::Devices => "devices",
            Self::HugeTlb => "hugetlb",
            Self::Pids => "pids",
            Self::PerfEvent => "perf_event",
            Self::Memory => "memory",
            Self::Blkio => "blkio",
            Self::NetworkPriority => "net_prio",
            Self::NetworkClassifier => "net_cls",
            Self::Freezer => "freezer",
        };

        write!(f, "{print}")
    }
}

impl AsRef<str> for ControllerType {
    fn as_ref(&self) -> &str {
        match *self {
            Self::Cpu => "cpu",
            Self::CpuAcct => "cpuacct",
            Self::CpuSet => "cpuset",
            Self::Devices => "devices",
            Self::HugeTlb => "hugetlb",
            Self::Pids => "pids",
            Self::PerfEvent => "perf_event",
            Self::Memory => "memory",
            Self::Blkio => "blkio",
            Self::NetworkPriority => "net_prio",
            Self::NetworkClassifier => "net_cls",
            Self::Freezer => "freezer",
        }
    }
}

// PATCH(inclavare): in the order runc's fs driver sets them (libcontainer/cgroups/fs/
// fs.go `subsystems`): its writes stop at the first failure, so the order decides what
// a refused update leaves written.
pub const CONTROLLERS: &[ControllerType] = &[
    ControllerType::CpuSet,
    ControllerType::Devices,
    ControllerType::Memory,
    ControllerType::Cpu,
    ControllerType::CpuAcct,
    ControllerType::Pids,
    ControllerType::Blkio,
    ControllerType::HugeTlb,
    ControllerType::NetworkClassifier,
    ControllerType::NetworkPriority,
    ControllerType::PerfEvent,
    ControllerType::Freezer,
];
