package config

// Presets are PortSentry 1.2's three port lists, exactly as its shipped
// portsentry.conf has them ("really anal" = comprehensive, "just want to be
// aware" = aware, the active default, and "bare-bones"). They are not nested:
// bare-bones TCP has 110, aware UDP has 37444 where comprehensive has 27444.
var Presets = map[string]struct{ TCP, UDP []uint16 }{
	"comprehensive": {
		TCP: []uint16{1, 7, 9, 11, 15, 70, 79, 80, 109, 110, 111, 119, 138, 139, 143, 512, 513, 514, 515, 540, 635, 1080, 1524, 2000, 2001, 4000, 4001, 5742, 6000, 6001, 6667, 12345, 12346, 20034, 27665, 30303, 32771, 32772, 32773, 32774, 31337, 40421, 40425, 49724, 54320},
		UDP: []uint16{1, 7, 9, 66, 67, 68, 69, 111, 137, 138, 161, 162, 474, 513, 517, 518, 635, 640, 641, 666, 700, 2049, 31335, 27444, 34555, 32770, 32771, 32772, 32773, 32774, 31337, 54321},
	},
	"aware": {
		TCP: []uint16{1, 11, 15, 79, 111, 119, 143, 540, 635, 1080, 1524, 2000, 5742, 6667, 12345, 12346, 20034, 27665, 31337, 32771, 32772, 32773, 32774, 40421, 49724, 54320},
		UDP: []uint16{1, 7, 9, 69, 161, 162, 513, 635, 640, 641, 700, 37444, 34555, 31335, 32770, 32771, 32772, 32773, 32774, 31337, 54321},
	},
	"bare-bones": {
		TCP: []uint16{1, 11, 15, 110, 111, 143, 540, 635, 1080, 1524, 2000, 12345, 12346, 20034, 32771, 32772, 32773, 32774, 49724, 54320},
		UDP: []uint16{1, 7, 9, 69, 161, 162, 513, 640, 700, 32770, 32771, 32772, 32773, 32774, 31337, 54321},
	},
}

// PresetNames lists the presets in documentation order.
var PresetNames = []string{"comprehensive", "aware", "bare-bones"}
