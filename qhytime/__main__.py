"""``python -m qhytime``: print the self-diagnosis (versions, database, leap seconds)."""

from qhytime.doctor import doctor_report

if __name__ == "__main__":
    print(doctor_report())
