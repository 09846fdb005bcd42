package config

// LoadFleetAdmin reads the fleet administrator's file, which
// "portsentry-nft fleet" acts with from an administrator's machine: a
// configuration whose fleet section has the servers, name: admin
// (FleetAdminName, which no host may take) and the credentials of the
// administrator's NATS user, which are never deployed on the hosts. The
// other sections are read as Load reads them (block.timeout is the
// default timeout of the administrator's blocks). Problems come back as
// Errors; an administrator's file must exist.
func LoadFleetAdmin(path string) (*Config, error) {
	data, mode, err := readConfigFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return parse(path, data, mode, true)
}

// ParseFleetAdmin is Parse of an administrator's file (LoadFleetAdmin).
func ParseFleetAdmin(file string, data []byte) (*Config, error) {
	return parse(file, data, 0, true)
}
