#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs airlockd as a Windows service: its own process, automatic start, restarted on failure,
    running as LocalService (or a virtual account) with its state in C:\ProgramData\Airlock.

.DESCRIPTION
    What the MSI (packaging\wix\main.wxs) does through ServiceInstall, for installs without the MSI.
    Idempotent: run it again to repair the service's settings and the folders' ACLs. It never deletes
    state (device CA, journal, policy ratchet), so it is also the upgrade step.

    Folders and who may do what (SY = SYSTEM, BA = Administrators, service = NT SERVICE\airlockd, the
    service SID, present in the token whichever account runs it; BU = Users):
      C:\ProgramData\Airlock               SY, BA full; service modify; BU read this folder only
      C:\ProgramData\Airlock\ca            + BU read (the public CA certificate and merged bundle)
      C:\ProgramData\Airlock\ca\private    SY, BA full; service modify; nobody else (the CA key)
      C:\ProgramData\Airlock\Config        SY, BA full; service and BU read (enrollment, policy.d:
                                           the managed files an MDM drops; the service never writes them)

.PARAMETER InstallDir
    Where airlockd.exe and airlock.exe are (default: C:\Program Files\Airlock).

.PARAMETER DataDir
    The service's state directory (default: C:\ProgramData\Airlock); its Config subfolder is the
    configuration directory.

.PARAMETER Account
    LocalService (default, what the MSI uses) or Virtual (NT SERVICE\airlockd).

.PARAMETER NoStart
    Install and configure, but do not start the service.

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install-service.ps1
#>
[CmdletBinding()]
param(
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'Airlock'),
    [string]$DataDir = (Join-Path $env:ProgramData 'Airlock'),
    [ValidateSet('LocalService', 'Virtual')]
    [string]$Account = 'LocalService',
    [switch]$NoStart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ServiceName = 'airlockd'
# The service SID of "airlockd" (S-1-5-80- and the SHA-1 of the upper-cased name in UTF-16LE, as
# `sc.exe showsid airlockd` prints): usable in ACLs before the service exists. Checked by
# scripts/lint-packaging.sh.
$ServiceSid = 'S-1-5-80-3936886372-1155082280-816232628-1518097279-4251151946'
$ConfigDir = Join-Path $DataDir 'Config'
$Exe = Join-Path $InstallDir 'airlockd.exe'
$Cli = Join-Path $InstallDir 'airlock.exe'

function Invoke-Native {
    param([string]$Program, [string[]]$Arguments)
    $output = & $Program @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) {
        throw "$Program $($Arguments -join ' ') failed with exit code $($LASTEXITCODE): $output"
    }
}

function Set-FolderAcl {
    # Replaces the folder's ACL with exactly `Grants` (icacls syntax), inheritance from above removed.
    param([string]$Path, [string[]]$Grants)
    if (-not (Test-Path -LiteralPath $Path)) {
        New-Item -ItemType Directory -Path $Path | Out-Null
    }
    $icaclsArgs = @($Path, '/inheritance:r', '/grant:r') + $Grants
    Invoke-Native 'icacls.exe' $icaclsArgs
}

if (-not (Test-Path -LiteralPath $Exe)) {
    throw "airlockd.exe not found in $($InstallDir): copy airlockd.exe and airlock.exe there first (or pass -InstallDir)"
}

$full = '(OI)(CI)F'
$modify = '(OI)(CI)M'
$read = '(OI)(CI)RX'
Set-FolderAcl $DataDir @("*S-1-5-18:$full", "*S-1-5-32-544:$full", "*$($ServiceSid):$modify", '*S-1-5-32-545:RX')
$caDir = Join-Path $DataDir 'ca'
if (-not (Test-Path -LiteralPath $caDir)) {
    New-Item -ItemType Directory -Path $caDir | Out-Null
}
# Inherits the state folder's ACL, plus read for users.
Invoke-Native 'icacls.exe' @($caDir, '/grant', "*S-1-5-32-545:$read")
Set-FolderAcl (Join-Path $caDir 'private') @("*S-1-5-18:$full", "*S-1-5-32-544:$full", "*$($ServiceSid):$modify")
Set-FolderAcl $ConfigDir @("*S-1-5-18:$full", "*S-1-5-32-544:$full", "*$($ServiceSid):$read", "*S-1-5-32-545:$read")
$dropDir = Join-Path $ConfigDir 'policy.d'
if (-not (Test-Path -LiteralPath $dropDir)) {
    New-Item -ItemType Directory -Path $dropDir | Out-Null
}

# Paths without a trailing backslash: a backslash before the closing quote would escape it.
$binPath = '"{0}" --state-dir "{1}" --config-dir "{2}"' -f $Exe, $DataDir.TrimEnd('\'), $ConfigDir.TrimEnd('\')
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($null -eq $existing) {
    New-Service -Name $ServiceName -BinaryPathName $binPath -DisplayName 'Airlock agent' `
        -StartupType Automatic | Out-Null
} else {
    if ($existing.Status -ne 'Stopped') {
        Stop-Service -Name $ServiceName -Force
    }
    # sc.exe config binPath= loses embedded quotes when called from Windows PowerShell 5.1.
    Set-ItemProperty -LiteralPath "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName" -Name ImagePath -Value $binPath
}

$startName = if ($Account -eq 'Virtual') { "NT SERVICE\$ServiceName" } else { 'NT AUTHORITY\LocalService' }
Invoke-Native 'sc.exe' @('config', $ServiceName, 'type=', 'own', 'start=', 'auto', 'obj=', $startName, 'depend=', 'Tcpip')
Invoke-Native 'sc.exe' @('description', $ServiceName, 'Governs this machine''s AI API traffic through a local proxy (Airlock).')
# The service SID in the token, so the ACLs above apply to this service alone.
Invoke-Native 'sc.exe' @('sidtype', $ServiceName, 'unrestricted')
# Only the privilege it needs.
Invoke-Native 'sc.exe' @('privs', $ServiceName, 'SeChangeNotifyPrivilege')
# Restart after 5 s, 10 s, then 60 s; the failure count resets after a day without one. failureflag 1:
# also when it stops with an error exit code, not only when it crashes.
Invoke-Native 'sc.exe' @('failure', $ServiceName, 'reset=', '86400', 'actions=', 'restart/5000/restart/10000/restart/60000')
Invoke-Native 'sc.exe' @('failureflag', $ServiceName, '1')

# The device CA before the first start, so `airlock setup` can trust it right away (created as an
# administrator, the files inherit the ACLs above).
Invoke-Native $Exe @('--init', '--state-dir', $DataDir.TrimEnd('\'))

if (-not $NoStart) {
    Start-Service -Name $ServiceName
}
Write-Host "airlockd is installed as the service '$ServiceName' ($startName), state in $DataDir."
Write-Host "Next: & '$Cli' --state-dir '$DataDir' setup --system --yes   (trusts the device CA machine-wide)"
