#Requires -Version 5.1
<#
.SYNOPSIS
    Intune Win32 app install script for Airlock: installs the MSI silently and drops the fleet
    enrollment into the managed configuration directory.

.DESCRIPTION
    Package this script with Airlock-<version>-x64.msi and your fleet's enrollment.toml (see
    ..\enrollment.example.toml) into an .intunewin (IntuneWinAppUtil.exe -c <folder> -s install.ps1),
    and set in the Win32 app:
      Install command:    powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install.ps1
      Uninstall command:  powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\uninstall.ps1
      Install behavior:   System
      Detection:          custom script, detect.ps1
      Return codes:       0 success, 3010 soft reboot, 1641 hard reboot
    The MSI runs `airlock setup --system --yes` itself (the device CA into the LocalMachine Root store,
    silently as SYSTEM). The enrollment is checked with the agent's own parser before it replaces the
    one in force, and written with a rename, so the agents never read half a file. A new enrollment
    is rolled out as a new app version (or a Remediation running this script with -EnrollmentOnly).

.PARAMETER Msi
    The MSI to install (default: the first Airlock-*.msi beside this script).

.PARAMETER Enrollment
    The enrollment to drop (default: enrollment.toml beside this script; none: leave it as it is).

.PARAMETER EnrollmentOnly
    Only (re)write the enrollment; do not run the MSI.
#>
[CmdletBinding()]
param(
    [string]$Msi,
    [string]$Enrollment = (Join-Path $PSScriptRoot 'enrollment.toml'),
    [switch]$EnrollmentOnly
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$InstallDir = Join-Path $env:ProgramFiles 'Airlock'
$ConfigDir = Join-Path $env:ProgramData 'Airlock\Config'
$Cli = Join-Path $InstallDir 'airlock.exe'
$LogDir = Join-Path $env:ProgramData 'Microsoft\IntuneManagementExtension\Logs'

$exitCode = 0
if (-not $EnrollmentOnly) {
    if (-not $Msi) {
        $found = Get-ChildItem -LiteralPath $PSScriptRoot -Filter 'Airlock-*.msi' | Select-Object -First 1
        if ($null -eq $found) {
            throw "no Airlock-*.msi beside $($PSCommandPath): package the MSI with this script"
        }
        $Msi = $found.FullName
    }
    if (-not (Test-Path -LiteralPath $LogDir)) {
        New-Item -ItemType Directory -Path $LogDir | Out-Null
    }
    $log = Join-Path $LogDir 'Airlock-msi.log'
    $msiArgs = @('/i', "`"$Msi`"", '/qn', '/norestart', '/l*v', "`"$log`"")
    $process = Start-Process -FilePath 'msiexec.exe' -ArgumentList $msiArgs -Wait -PassThru
    $exitCode = $process.ExitCode
    if ($exitCode -notin @(0, 3010, 1641)) {
        Write-Error "msiexec exited with $exitCode; see $log"
        exit $exitCode
    }
}

if (Test-Path -LiteralPath $Enrollment) {
    if (-not (Test-Path -LiteralPath $Cli)) {
        throw "$Cli is missing: install the MSI first"
    }
    # The agent's own parser decides whether it is a usable enrollment.
    $check = Join-Path ([System.IO.Path]::GetTempPath()) ('airlock-enroll-' + [guid]::NewGuid())
    New-Item -ItemType Directory -Path $check | Out-Null
    try {
        Copy-Item -LiteralPath $Enrollment -Destination (Join-Path $check 'enrollment.toml')
        & $Cli enroll --show --config-dir $check | Out-Null
        if ($LASTEXITCODE -ne 0) {
            throw "$Enrollment is not a valid enrollment (airlock enroll --show exited $LASTEXITCODE); nothing changed"
        }
    } finally {
        Remove-Item -LiteralPath $check -Recurse -Force
    }
    if (-not (Test-Path -LiteralPath $ConfigDir)) {
        New-Item -ItemType Directory -Path $ConfigDir | Out-Null
    }
    $target = Join-Path $ConfigDir 'enrollment.toml'
    $next = Join-Path $ConfigDir '.enrollment.toml.new'
    Copy-Item -LiteralPath $Enrollment -Destination $next -Force
    Move-Item -LiteralPath $next -Destination $target -Force
    Write-Output "wrote $target"
}
exit $exitCode
